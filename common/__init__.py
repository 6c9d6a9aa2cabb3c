"""Shared core of the stage packages: config, CLI, errors, atomic writes, problem lists, TensorFlow set-up
and the Kaggle log-loss. It imports no stage package."""
