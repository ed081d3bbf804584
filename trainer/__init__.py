"""Pattern physics, dataset synthesis and training.

The physics (``diffstream.trainer.physics``) needs only numpy, orix, kikuchipy and diffsims,
so the detector simulator can use it on machines without torch.
"""
