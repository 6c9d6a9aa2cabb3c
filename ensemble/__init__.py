"""Ensemble stage: frame scores -> calibrated per-video predictions."""
