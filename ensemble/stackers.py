"""Learned combiners of video-level columns, each saved without pickle (JSON, LightGBM text).

All follow scikit-learn's shape: ``fit(X, y)`` then ``predict_proba(X) -> (n,)`` P(FAKE), with X a DataFrame.
"""
from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit, softmax

from .calibration import logit
from .metrics import log_loss


class WeightedBlend:
    """A convex blend of probability columns, weights fitted to minimise log-loss (softmax parameterised)."""

    def __init__(self, columns: list[str]):
        self.columns = list(columns)
        self.weights = np.full(len(columns), 1 / len(columns))

    def fit(self, X: pd.DataFrame, y: np.ndarray, **_) -> "WeightedBlend":
        P = X[self.columns].to_numpy(np.float64)
        result = minimize(lambda z: log_loss(y, P @ softmax(z), eps=1e-6), np.zeros(len(self.columns)),
                          method="L-BFGS-B")
        self.weights = softmax(result.x)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return X[self.columns].to_numpy(np.float64) @ self.weights

    def to_json(self) -> dict:
        return {"columns": self.columns, "weights": self.weights.tolist()}

    @classmethod
    def from_json(cls, obj: dict) -> "WeightedBlend":
        model = cls(obj["columns"])
        model.weights = np.asarray(obj["weights"], np.float64)
        return model


class LogisticStack:
    """L2 logistic regression on standardised logits of probability columns."""

    def __init__(self, columns: list[str], C: float = 0.1):
        self.columns, self.C = list(columns), C
        self.mean = self.scale = self.coef = None
        self.intercept = 0.0

    def _z(self, X: pd.DataFrame) -> np.ndarray:
        return (logit(X[self.columns].to_numpy(np.float64)) - self.mean) / self.scale

    def fit(self, X: pd.DataFrame, y: np.ndarray, **_) -> "LogisticStack":
        from sklearn.linear_model import LogisticRegression

        L = logit(X[self.columns].to_numpy(np.float64))
        self.mean, self.scale = L.mean(0), np.where(L.std(0) > 0, L.std(0), 1.0)
        lr = LogisticRegression(C=self.C, max_iter=1000).fit(self._z(X), y)
        self.coef, self.intercept = lr.coef_[0], float(lr.intercept_[0])
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return expit(self._z(X) @ self.coef + self.intercept)

    def to_json(self) -> dict:
        return {"columns": self.columns, "C": self.C, "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                "coef": self.coef.tolist(), "intercept": self.intercept}

    @classmethod
    def from_json(cls, obj: dict) -> "LogisticStack":
        model = cls(obj["columns"], obj["C"])
        model.mean, model.scale, model.coef = (np.asarray(obj[k], np.float64) for k in ("mean", "scale", "coef"))
        model.intercept = float(obj["intercept"])
        return model


class LightGBMStack:
    """LightGBM on video features, optionally boosting from a linear base stack.

    ``base_columns``: probability columns (e.g. every ``<backbone>/<rule>``). When given, a linear stack on them
    (``base``: "logistic" or "weighted") is fitted first and LightGBM starts from its logit (``init_score``), so
    the trees only model what the linear stack misses; with no useful split the early-stopped booster keeps the
    base. ``monotone_columns``: P(FAKE) may only rise with each of these. ``fit`` early-stops on ``valid`` when
    given; otherwise it trains ``rounds`` (default ``n_estimators``).
    """

    def __init__(self, columns: list[str], params: dict, seed: int = 0, base_columns: list[str] | None = None,
                 base: str = "logistic", base_c: float = 0.1, monotone_columns: list[str] | None = None):
        self.columns, self.params, self.seed = list(columns), dict(params), seed
        self.base_columns, self.base_kind, self.base_c = list(base_columns or []), base, base_c
        self.monotone_columns = list(monotone_columns or [])
        self.base: LogisticStack | WeightedBlend | None = None
        self.booster: lgb.Booster | None = None
        self.best_iteration = None

    def _lgb_params(self) -> dict:
        p = {k: v for k, v in self.params.items() if k not in ("n_estimators", "early_stopping_rounds")}
        if self.monotone_columns:
            p["monotone_constraints"] = [int(c in self.monotone_columns) for c in self.columns]
        return {"objective": "binary", "verbosity": -1, "seed": self.seed, "deterministic": True,
                "num_threads": 1, "force_row_wise": True, **p}

    def _matrix(self, X: pd.DataFrame) -> np.ndarray:
        return X[self.columns].to_numpy(np.float64)

    def _init(self, X: pd.DataFrame) -> np.ndarray | None:
        return None if self.base is None else logit(self.base.predict_proba(X))

    def fit(self, X: pd.DataFrame, y: np.ndarray, valid: tuple[pd.DataFrame, np.ndarray] | None = None,
            rounds: int | None = None) -> "LightGBMStack":
        if self.base_columns:
            self.base = (LogisticStack(self.base_columns, self.base_c) if self.base_kind == "logistic"
                         else WeightedBlend(self.base_columns)).fit(X, y)
        train = lgb.Dataset(self._matrix(X), y, init_score=self._init(X), feature_name=_safe_names(self.columns),
                            free_raw_data=False)
        callbacks, sets = [], []
        if valid is not None:
            sets = [lgb.Dataset(self._matrix(valid[0]), valid[1], init_score=self._init(valid[0]), reference=train)]
            callbacks = [lgb.early_stopping(self.params["early_stopping_rounds"], verbose=False)]
        self.booster = lgb.train(self._lgb_params(), train,
                                 num_boost_round=self.params["n_estimators"] if rounds is None else rounds,
                                 valid_sets=sets, callbacks=callbacks)
        self.best_iteration = self.booster.best_iteration or self.booster.current_iteration()
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        raw = self.booster.predict(self._matrix(X), num_iteration=self.best_iteration, raw_score=True)
        if self.base is not None:
            raw = raw + self._init(X)
        return expit(raw)

    def model_text(self) -> str:
        return self.booster.model_to_string(num_iteration=self.best_iteration)

    def to_json(self) -> dict:
        """Everything but the trees (saved as LightGBM text by ``model_text``)."""
        return {"columns": self.columns, "best_iteration": self.best_iteration,
                "base": None if self.base is None else self.base.to_json()}

    @classmethod
    def from_text(cls, text: str, obj: dict) -> "LightGBMStack":
        model = cls(obj["columns"], {})
        model.booster = lgb.Booster(model_str=text)
        model.best_iteration = obj.get("best_iteration")
        if obj.get("base"):
            model.base = (WeightedBlend if "weights" in obj["base"] else LogisticStack).from_json(obj["base"])
            model.base_columns = model.base.columns
        return model


def _safe_names(columns: list[str]) -> list[str]:
    return [c.replace("/", "__").replace(":", "_").replace(".", "p") for c in columns]
