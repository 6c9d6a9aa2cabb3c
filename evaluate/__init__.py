"""Evaluation stage: log-loss reports, offline scoring and submission files."""
