"""Diffraction pattern physics: phases, EBSD and SPED patterns, detectors and specimens.

Everything here runs on numpy; the torch projector is imported only on request.
"""
