"""Probability calibrators stored as JSON: clipping bounds, Platt (temperature and bias) scaling, isotonic.

The calibrator of a method is chosen by family-grouped cross-fitting on its out-of-fold predictions.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import expit
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from common.metrics import log_loss

from .crossfit import cross_fit

# Numerical bounds of the ensemble's probabilities (safety margins, not tuning: a user sets clip_eps and
# [ensemble.blend] eps in the config). Each keeps its value so that saved outputs stay byte-identical.
LOGIT_EPS = 1e-6         # probabilities are clipped to [LOGIT_EPS, 1 - LOGIT_EPS] before a logit or a log in the
                         # calibrators and learned combiners: |logit| <= 13.8 keeps every fit finite
PROBABILITY_EPS = 1e-3   # the isotonic calibrator's and the rank mean's outputs stay in [PROBABILITY_EPS,
                         # 1 - PROBABILITY_EPS]: a step function of a few hundred videos would otherwise predict
                         # exact 0 or 1 over whole intervals (one mistake there: 34.5 nats, here at most 6.9)


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), LOGIT_EPS, 1 - LOGIT_EPS)
    return np.log(p / (1 - p))


def platt_fit(p: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(a, b) of Platt scaling, sigmoid(a * logit(p) + b): unregularised 1-D logistic regression on logit(p) (n,)."""
    lr = LogisticRegression(C=1e6, max_iter=1000, solver="newton-cholesky").fit(logit(p)[:, None], y)
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def platt(p: np.ndarray, a, b) -> np.ndarray:
    """Platt-scaled probabilities; ``a`` and ``b`` are scalars or broadcast over columns of ``p``."""
    return expit(a * logit(p) + b)


@dataclass
class Calibrator:
    """``kind``: "clip" (params: eps), "platt" (params: a, b: sigmoid(a * logit(p) + b)) or "isotonic"
    (params: x, y breakpoints, interpolated)."""

    kind: str
    params: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"clip:{self.params['eps']:g}" if self.kind == "clip" else self.kind

    def fit(self, p: np.ndarray, y: np.ndarray) -> Calibrator:
        if self.kind == "platt":
            a, b = platt_fit(p, y)
            self.params = {"a": a, "b": b}
        elif self.kind == "isotonic":
            iso = IsotonicRegression(y_min=PROBABILITY_EPS, y_max=1 - PROBABILITY_EPS, out_of_bounds="clip").fit(p, y)
            self.params = {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}
        return self

    def transform(self, p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, np.float64)
        if self.kind == "clip":
            return np.clip(p, self.params["eps"], 1 - self.params["eps"])
        if self.kind == "platt":
            return platt(p, self.params["a"], self.params["b"])
        return np.interp(p, self.params["x"], self.params["y"])

    def to_json(self) -> dict:
        return {"kind": self.kind, "params": self.params}

    @classmethod
    def from_json(cls, obj: dict) -> Calibrator:
        if obj.get("kind") not in ("clip", "platt", "isotonic"):
            raise ValueError(f"unknown calibrator {obj.get('kind')!r}")
        return cls(obj["kind"], dict(obj["params"]))


def candidates(clip_eps: list[float]) -> list[Calibrator]:
    return [Calibrator("clip", {"eps": e}) for e in clip_eps] + [Calibrator("platt"), Calibrator("isotonic")]


def choose(p: np.ndarray, y: np.ndarray, folds: np.ndarray, clip_eps: list[float]
           ) -> tuple[Calibrator, dict, np.ndarray]:
    """Cross-fit every candidate over ``folds`` on out-of-fold predictions ``p``; return the best, refit on all,
    each candidate's CV log-loss, and the best one's cross-fitted calibrated predictions (n,)."""
    scores, fitted = {}, {}
    for cand in candidates(clip_eps):
        out = cross_fit(lambda: Calibrator(cand.kind, dict(cand.params)), p, y, folds).oof
        scores[cand.name] = log_loss(y, out)
        fitted[cand.name] = (cand, out)
    best = min(scores, key=scores.get)
    cand, out = fitted[best]
    return Calibrator(cand.kind, dict(cand.params)).fit(p, y), scores, out
