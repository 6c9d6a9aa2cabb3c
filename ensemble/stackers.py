"""Learned combiners of video-level columns, each saved without pickle (JSON, LightGBM text).

They follow scikit-learn's conventions, so its tools (``clone``, ``cross_val_predict``, calibration wrappers)
apply: parameters are set in ``__init__`` and kept as given, ``fit(X, y)`` returns the estimator, fitted state
ends in ``_``, and ``predict_proba(X)`` returns ``(n, 2)``: P(REAL), P(FAKE). ``X`` is a DataFrame holding at
least ``columns``; ``y`` is (n,) with 1 for FAKE.
"""
from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit, softmax
from sklearn.base import BaseEstimator, ClassifierMixin

from common.metrics import log_loss

from .calibration import logit


class Combiner(ClassifierMixin, BaseEstimator):
    """Shared by every combiner: ``predict_proba`` from ``_p_fake`` and hard labels at 0.5."""

    def _p_fake(self, X: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """(n, 2): P(REAL), P(FAKE) of each row of ``X``."""
        p = self._p_fake(X)
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self._p_fake(X) > 0.5).astype(int)

    def _fitted(self, y) -> None:
        self.classes_ = np.array([0, 1])


class WeightedBlend(Combiner):
    """A convex blend of probability columns, weights fitted to minimise log-loss (softmax parameterised).
    Fitted: ``weights_`` (len(columns),), summing to 1."""

    def __init__(self, columns: list[str]):
        self.columns = columns

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> "WeightedBlend":
        P = X[list(self.columns)].to_numpy(np.float64)
        result = minimize(lambda z: log_loss(y, P @ softmax(z), eps=1e-6), np.zeros(len(self.columns)),
                          method="L-BFGS-B")
        self.weights_ = softmax(result.x)
        self._fitted(y)
        return self

    def _p_fake(self, X: pd.DataFrame) -> np.ndarray:
        return X[list(self.columns)].to_numpy(np.float64) @ self.weights_

    def to_json(self) -> dict:
        return {"columns": list(self.columns), "weights": self.weights_.tolist()}

    @classmethod
    def from_json(cls, obj: dict) -> "WeightedBlend":
        model = cls(obj["columns"])
        model.weights_ = np.asarray(obj["weights"], np.float64)
        model._fitted(None)
        return model


class LogisticStack(Combiner):
    """L2 logistic regression on standardised logits of probability columns.
    Fitted: ``mean_``, ``scale_``, ``coef_`` (len(columns),) and ``intercept_``."""

    def __init__(self, columns: list[str], C: float = 0.1):
        self.columns, self.C = columns, C

    def _z(self, X: pd.DataFrame) -> np.ndarray:
        return (logit(X[list(self.columns)].to_numpy(np.float64)) - self.mean_) / self.scale_

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> "LogisticStack":
        from sklearn.linear_model import LogisticRegression

        L = logit(X[list(self.columns)].to_numpy(np.float64))
        self.mean_, self.scale_ = L.mean(0), np.where(L.std(0) > 0, L.std(0), 1.0)
        lr = LogisticRegression(C=self.C, max_iter=1000).fit(self._z(X), y)
        self.coef_, self.intercept_ = lr.coef_[0], float(lr.intercept_[0])
        self._fitted(y)
        return self

    def _p_fake(self, X: pd.DataFrame) -> np.ndarray:
        return expit(self._z(X) @ self.coef_ + self.intercept_)

    def to_json(self) -> dict:
        return {"columns": list(self.columns), "C": self.C, "mean": self.mean_.tolist(),
                "scale": self.scale_.tolist(), "coef": self.coef_.tolist(), "intercept": self.intercept_}

    @classmethod
    def from_json(cls, obj: dict) -> "LogisticStack":
        model = cls(obj["columns"], obj["C"])
        model.mean_, model.scale_, model.coef_ = (np.asarray(obj[k], np.float64) for k in ("mean", "scale", "coef"))
        model.intercept_ = float(obj["intercept"])
        model._fitted(None)
        return model


class LightGBMStack(Combiner):
    """LightGBM on video features, optionally boosting from a linear base stack.

    ``params``: LightGBM parameters plus ``n_estimators`` and ``early_stopping_rounds``. ``base_columns``:
    probability columns (e.g. every ``<backbone>/<rule>``). When given, a linear stack on them (``base``:
    "logistic" or "weighted") is fitted first and LightGBM starts from its logit (``init_score``), so the trees
    only model what the linear stack misses; with no useful split the early-stopped booster keeps the base.
    ``monotone_columns``: P(FAKE) may only rise with each of these. ``fit`` early-stops on ``valid`` when given;
    otherwise it trains ``n_rounds`` rounds (default ``params["n_estimators"]``).
    Fitted: ``base_`` (the linear stack or None), ``booster_``, ``best_iteration_``.
    """

    def __init__(self, columns: list[str], params: dict, seed: int = 0, base_columns: list[str] | None = None,
                 base: str = "logistic", base_c: float = 0.1, monotone_columns: list[str] | None = None,
                 n_rounds: int | None = None):
        self.columns, self.params, self.seed = columns, params, seed
        self.base_columns, self.base, self.base_c = base_columns, base, base_c
        self.monotone_columns, self.n_rounds = monotone_columns, n_rounds

    def _lgb_params(self) -> dict:
        p = {k: v for k, v in self.params.items() if k not in ("n_estimators", "early_stopping_rounds")}
        if self.monotone_columns:
            p["monotone_constraints"] = [int(c in self.monotone_columns) for c in self.columns]
        return {"objective": "binary", "verbosity": -1, "seed": self.seed, "deterministic": True,
                "num_threads": 1, "force_row_wise": True, **p}

    def _matrix(self, X: pd.DataFrame) -> np.ndarray:
        return X[list(self.columns)].to_numpy(np.float64)

    def _init(self, X: pd.DataFrame) -> np.ndarray | None:
        return None if self.base_ is None else logit(self.base_.predict_proba(X)[:, 1])

    def fit(self, X: pd.DataFrame, y: np.ndarray, valid: tuple[pd.DataFrame, np.ndarray] | None = None
            ) -> "LightGBMStack":
        self.base_ = None
        if self.base_columns:
            self.base_ = (LogisticStack(self.base_columns, self.base_c) if self.base == "logistic"
                          else WeightedBlend(self.base_columns)).fit(X, y)
        train = lgb.Dataset(self._matrix(X), y, init_score=self._init(X), feature_name=_safe_names(self.columns),
                            free_raw_data=False)
        callbacks, sets = [], []
        if valid is not None:
            sets = [lgb.Dataset(self._matrix(valid[0]), valid[1], init_score=self._init(valid[0]), reference=train)]
            callbacks = [lgb.early_stopping(self.params["early_stopping_rounds"], verbose=False)]
        rounds = self.params["n_estimators"] if self.n_rounds is None else self.n_rounds
        self.booster_ = lgb.train(self._lgb_params(), train, num_boost_round=rounds, valid_sets=sets,
                                  callbacks=callbacks)
        self.best_iteration_ = self.booster_.best_iteration or self.booster_.current_iteration()
        self._fitted(y)
        return self

    def _p_fake(self, X: pd.DataFrame) -> np.ndarray:
        raw = self.booster_.predict(self._matrix(X), num_iteration=self.best_iteration_, raw_score=True)
        if self.base_ is not None:
            raw = raw + self._init(X)
        return expit(raw)

    def model_text(self) -> str:
        return self.booster_.model_to_string(num_iteration=self.best_iteration_)

    def to_json(self) -> dict:
        """Everything but the trees (saved as LightGBM text by ``model_text``)."""
        return {"columns": list(self.columns), "best_iteration": self.best_iteration_,
                "base": None if self.base_ is None else self.base_.to_json()}

    @classmethod
    def from_text(cls, text: str, obj: dict) -> "LightGBMStack":
        model = cls(obj["columns"], {})
        model.booster_ = lgb.Booster(model_str=text)
        model.best_iteration_ = obj.get("best_iteration")
        model.base_ = None
        if obj.get("base"):
            model.base_ = (WeightedBlend if "weights" in obj["base"] else LogisticStack).from_json(obj["base"])
            model.base_columns = model.base_.columns
        model._fitted(None)
        return model


def _safe_names(columns: list[str]) -> list[str]:
    return [c.replace("/", "__").replace(":", "_").replace(".", "p") for c in columns]
