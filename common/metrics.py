"""Kaggle's log-loss as the DFDC defined it: natural log, y = 1 for FAKE, predictions clipped to [eps, 1 - eps];
and its class-balanced form, used for frames (training) and videos (reports) alike."""
from __future__ import annotations

import numpy as np

KAGGLE_EPS = 1e-15


def log_loss(y: np.ndarray, p: np.ndarray, eps: float = KAGGLE_EPS) -> float:
    p = np.clip(np.asarray(p, np.float64), eps, 1 - eps)
    y = np.asarray(y, np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def label_arrays(y, p) -> tuple[np.ndarray, np.ndarray]:
    """``y`` as int labels and ``p`` as float64, both 1-D and of equal length."""
    y = np.asarray(y).astype(np.int64).ravel()
    p = np.asarray(p, np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"y and p differ in length: {y.size} != {p.size}")
    return y, p


def both_classes(y: np.ndarray) -> bool:
    return bool(np.any(y == 1) and np.any(y == 0))


def balanced_log_loss(y, p, eps: float = KAGGLE_EPS) -> float:
    """Mean of the Kaggle log-loss over FAKE rows and over REAL rows; y, p: (n,). NaN if a class is absent."""
    y, p = label_arrays(y, p)
    if not both_classes(y):
        return float("nan")
    fake = y == 1
    return 0.5 * (log_loss(y[fake], p[fake], eps) + log_loss(y[~fake], p[~fake], eps))
