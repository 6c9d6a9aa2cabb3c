"""Kaggle's log-loss as the DFDC defined it: natural log, y = 1 for FAKE, predictions clipped to [eps, 1 - eps]."""
from __future__ import annotations

import numpy as np

KAGGLE_EPS = 1e-15


def log_loss(y: np.ndarray, p: np.ndarray, eps: float = KAGGLE_EPS) -> float:
    p = np.clip(np.asarray(p, np.float64), eps, 1 - eps)
    y = np.asarray(y, np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
