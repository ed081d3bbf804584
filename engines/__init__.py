"""Inference backends behind one ``Engine`` interface."""
