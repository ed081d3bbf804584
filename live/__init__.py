"""The live path: wire protocol, receiver, batcher, map assembly and the command line.

Nothing under this package imports torch: a beamline PC with ONNX Runtime or TensorRT
alone runs it.
"""
