"""Benches of the stages and their fixtures (``python -m bench``), outside the four stages: bench may import any
stage, no stage imports bench."""
