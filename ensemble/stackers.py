"""Learned combiners of video-level columns, each saved without pickle (JSON, LightGBM text).

They follow scikit-learn's conventions, so its tools (``clone``, ``cross_val_predict``, calibration wrappers)
apply: parameters are set in ``__init__`` and kept as given, ``fit(X, y)`` returns the estimator, fitted state
ends in ``_``, and ``predict_proba(X)`` returns ``(n, 2)``: P(REAL), P(FAKE). ``X`` is a DataFrame holding at
least ``columns``; ``y`` is (n,) with 1 for FAKE.
"""
from __future__ import annotations

import warnings

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit, softmax
from sklearn.base import BaseEstimator, ClassifierMixin

from common.metrics import log_loss

from .calibration import LOGIT_EPS, PROBABILITY_EPS, logit, platt, platt_fit

SOLVER = "newton-cholesky"     # a few Newton steps: fast for the stacks' few hundred features
KINDS = {}          # the "kind" saved in each combiner's JSON -> its class (see ``from_json``)


def saved_kind(cls):
    """Register a combiner class under its ``kind`` for loading from JSON."""
    KINDS[cls.kind] = cls
    return cls


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


def inner_folds(groups: np.ndarray | None, y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """(n,) family-grouped, label-stratified fold ids in [0, k) for a combiner's own tuning; without ``groups``
    every row is its own family."""
    from data.splits import grouped_assign

    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    return grouped_assign(groups, np.asarray(y), np.full(k, 1 / k), np.random.default_rng(seed))


def _blend_loss(z: np.ndarray, P: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Log-loss of the convex blend ``P @ softmax(z)`` (probabilities clipped to [LOGIT_EPS, 1 - LOGIT_EPS]) and its
    gradient in ``z``."""
    w = softmax(z)
    raw = P @ w
    p = np.clip(raw, LOGIT_EPS, 1 - LOGIT_EPS)
    loss = -np.mean(y * np.log(p) + (1 - y) * np.log1p(-p))
    dp = np.where(p == raw, -(y / p - (1 - y) / (1 - p)) / len(y), 0.0)
    g = P.T @ dp                                      # d loss / d w
    return float(loss), w * (g - w @ g)              # through the softmax


@saved_kind
class WeightedBlend(Combiner):
    """A convex blend of probability columns, weights fitted to minimise log-loss (softmax parameterised).
    Fitted: ``weights_`` (len(columns),), summing to 1."""

    kind = "weighted"

    def __init__(self, columns: list[str]):
        self.columns = columns

    def fit(self, X: pd.DataFrame, y: np.ndarray, groups: np.ndarray | None = None) -> WeightedBlend:
        P = X[list(self.columns)].to_numpy(np.float64)
        result = minimize(_blend_loss, np.zeros(len(self.columns)), args=(P, np.asarray(y, np.float64)),
                          jac=True, method="L-BFGS-B")
        self.weights_ = softmax(result.x)
        self._fitted(y)
        return self

    def _p_fake(self, X: pd.DataFrame) -> np.ndarray:
        return X[list(self.columns)].to_numpy(np.float64) @ self.weights_

    def to_json(self) -> dict:
        return {"kind": self.kind, "columns": list(self.columns), "weights": self.weights_.tolist()}

    @classmethod
    def from_json(cls, obj: dict) -> WeightedBlend:
        model = cls(obj["columns"])
        model.weights_ = np.asarray(obj["weights"], np.float64)
        model._fitted(None)
        return model


def _neg_log_loss(model, X: np.ndarray, y: np.ndarray) -> float:
    """A scorer for LogisticRegressionCV, without scikit-learn's scorer machinery (costly per call)."""
    return -log_loss(y, model.predict_proba(X)[:, 1])


class LinearStack(Combiner):
    """L2 logistic regression on standardised features of probability columns, with ``C`` or, given ``Cs``,
    the C of ``Cs`` chosen by family-grouped ``cv_folds``-fold CV inside ``fit`` (``groups``: (n,) family ids).
    Subclasses define the features (``_features``), standardised on the training rows. Fitted: ``C_``,
    ``cv_scores_`` ({C: mean fold log-loss}, empty without ``Cs``), ``mean_``, ``scale_``, ``coef_``
    (n_features,) and ``intercept_``."""

    kind = ""

    def _features(self, X: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError

    def _logits(self, X: pd.DataFrame) -> np.ndarray:
        return logit(X[list(self.columns)].to_numpy(np.float64))

    def _prepare(self, X: pd.DataFrame) -> None:
        """Learn what the features need from the training rows (e.g. spline knots)."""

    def _z(self, X: pd.DataFrame) -> np.ndarray:
        return (self._features(X) - self.mean_) / self.scale_

    def fit(self, X: pd.DataFrame, y: np.ndarray, groups: np.ndarray | None = None) -> LinearStack:
        from sklearn.linear_model import LogisticRegression, LogisticRegressionCV

        self._prepare(X)
        F = self._features(X)
        self.mean_, self.scale_ = F.mean(0), np.where(F.std(0) > 0, F.std(0), 1.0)
        Z = (F - self.mean_) / self.scale_
        self.cv_scores_ = {}
        if self.Cs:
            # one regularisation path per fold, warm-started from C to C (scikit-learn's LogisticRegressionCV)
            folds = inner_folds(groups, y, self.cv_folds, self.seed)
            splits = [(np.flatnonzero(folds != k), np.flatnonzero(folds == k)) for k in np.unique(folds)]
            with warnings.catch_warnings():     # scikit-learn 1.9 announces changes of defaults and attributes
                warnings.simplefilter("ignore", FutureWarning)
                lr = LogisticRegressionCV(Cs=sorted(self.Cs), cv=splits, scoring=_neg_log_loss, max_iter=1000,
                                          solver=SOLVER).fit(Z, y)
            self.C_ = float(lr.C_[0])
            self.cv_scores_ = dict(zip(map(float, lr.Cs_), (-lr.scores_[1].mean(0)).tolist()))
        else:
            self.C_ = self.C
            lr = LogisticRegression(C=self.C_, max_iter=1000, solver=SOLVER).fit(Z, y)
        self.coef_, self.intercept_ = lr.coef_[0], float(lr.intercept_[0])
        self._fitted(y)
        return self

    def _p_fake(self, X: pd.DataFrame) -> np.ndarray:
        return expit(self._z(X) @ self.coef_ + self.intercept_)

    def to_json(self) -> dict:
        return {"kind": self.kind, "columns": list(self.columns), "C": self.C_, "mean": self.mean_.tolist(),
                "scale": self.scale_.tolist(), "coef": self.coef_.tolist(), "intercept": self.intercept_}

    def _load(self, obj: dict) -> None:
        """Read what ``_prepare`` learned back from ``obj``."""

    @classmethod
    def from_json(cls, obj: dict) -> LinearStack:
        model = cls(obj["columns"], obj["C"])
        model.C_ = model.C
        model.mean_, model.scale_, model.coef_ = (np.asarray(obj[k], np.float64) for k in ("mean", "scale", "coef"))
        model.intercept_ = float(obj["intercept"])
        model._load(obj)
        model._fitted(None)
        return model


@saved_kind
class LogisticStack(LinearStack):
    """L2 logistic regression on the standardised logits of probability columns (n, len(columns))."""

    kind = "logistic"

    def __init__(self, columns: list[str], C: float = 0.1, Cs: tuple[float, ...] | None = None,
                 cv_folds: int = 5, seed: int = 0):
        self.columns, self.C, self.Cs, self.cv_folds, self.seed = columns, C, Cs, cv_folds, seed

    def _features(self, X: pd.DataFrame) -> np.ndarray:
        return self._logits(X)


@saved_kind
class SplineStack(LinearStack):
    """A generalised additive stack: each column's logit enters through a B-spline basis (``n_knots`` knots
    spread evenly over its training range, degree ``degree``, constant beyond it), so a badly calibrated or
    non-monotone member gets its own learned curve. Features: (n, len(columns) * (n_knots + degree - 1)).
    Fitted besides ``LinearStack``'s: ``knots_`` (n_knots, len(columns))."""

    kind = "spline"

    def __init__(self, columns: list[str], C: float = 0.1, Cs: tuple[float, ...] | None = None,
                 cv_folds: int = 5, seed: int = 0, n_knots: int = 4, degree: int = 2):
        self.columns, self.C, self.Cs, self.cv_folds, self.seed = columns, C, Cs, cv_folds, seed
        self.n_knots, self.degree = n_knots, degree

    def _prepare(self, X: pd.DataFrame) -> None:
        L = self._logits(X)
        lo, hi = L.min(0), L.max(0)
        hi = np.where(hi > lo, hi, lo + 1.0)              # a constant column still gets distinct knots
        self.knots_ = np.linspace(lo, hi, self.n_knots)
        self._spline = None

    def _features(self, X: pd.DataFrame) -> np.ndarray:
        from sklearn.preprocessing import SplineTransformer

        if getattr(self, "_spline", None) is None:
            self._spline = SplineTransformer(knots=self.knots_, degree=self.degree, extrapolation="constant")
            self._spline.fit(self.knots_)
        return self._spline.transform(self._logits(X))

    def to_json(self) -> dict:
        return {**super().to_json(), "degree": self.degree, "knots": self.knots_.tolist()}

    def _load(self, obj: dict) -> None:
        self.knots_ = np.asarray(obj["knots"], np.float64)
        self.degree, self.n_knots = int(obj["degree"]), len(self.knots_)
        if self.knots_.ndim != 2 or self.knots_.shape[1] != len(self.columns):
            raise ValueError(f"spline knots of shape {self.knots_.shape} for {len(self.columns)} columns")
        self._spline = None


@saved_kind
class EnsembleSelection(Combiner):
    """Caruana et al. (2004) ensemble selection. The library is the ``columns``, each Platt-scaled on the
    training rows; ``iterations`` greedy steps add (with replacement) the member whose inclusion gives the
    lowest training log-loss of the probability average, starting from the best single member. Bagged:
    ``bags`` selections, each over a random ``bag_fraction`` of the library, and their weights are averaged.
    Fitted: ``a_``, ``b_`` (len(columns),) Platt parameters and ``weights_`` (len(columns),), summing to 1."""

    kind = "caruana"

    def __init__(self, columns: list[str], iterations: int = 50, bags: int = 20, bag_fraction: float = 0.5,
                 seed: int = 0):
        self.columns, self.iterations, self.bags = columns, iterations, bags
        self.bag_fraction, self.seed = bag_fraction, seed

    def _library(self, X: pd.DataFrame) -> np.ndarray:
        return platt(X[list(self.columns)].to_numpy(np.float64), self.a_, self.b_)

    def fit(self, X: pd.DataFrame, y: np.ndarray, groups: np.ndarray | None = None) -> EnsembleSelection:
        P = X[list(self.columns)].to_numpy(np.float64)
        self.a_, self.b_ = (np.array(v) for v in zip(*(platt_fit(P[:, j], y) for j in range(P.shape[1]))))
        P = platt(P, self.a_, self.b_)
        rng = np.random.default_rng(self.seed)
        n = P.shape[1]
        size = max(1, int(np.ceil(self.bag_fraction * n)))
        weights = np.zeros(n)
        for _ in range(self.bags):
            members = np.sort(rng.choice(n, size, replace=False)) if size < n else np.arange(n)
            weights += _greedy_selection(P[:, members], y, self.iterations, members, n)
        self.weights_ = weights / weights.sum()
        self._fitted(y)
        return self

    def _p_fake(self, X: pd.DataFrame) -> np.ndarray:
        return self._library(X) @ self.weights_

    def to_json(self) -> dict:
        return {"kind": self.kind, "columns": list(self.columns), "a": self.a_.tolist(), "b": self.b_.tolist(),
                "weights": self.weights_.tolist()}

    @classmethod
    def from_json(cls, obj: dict) -> EnsembleSelection:
        model = cls(obj["columns"])
        model.a_, model.b_, model.weights_ = (np.asarray(obj[k], np.float64) for k in ("a", "b", "weights"))
        if not (len(model.a_) == len(model.b_) == len(model.weights_) == len(model.columns)):
            raise ValueError("Platt parameters and weights must have one entry per column")
        model._fitted(None)
        return model


def _greedy_selection(P: np.ndarray, y: np.ndarray, iterations: int, members: np.ndarray, n: int) -> np.ndarray:
    """Selection counts (n,) / iterations of one greedy run over the library columns ``P`` (rows, len(members)):
    each step adds the column whose inclusion gives the lowest log-loss, every column scored at once."""
    counts = np.zeros(n)
    total = np.zeros(len(y))
    pos, neg = y == 1, y == 0
    for step in range(iterations):
        trial = np.clip((total[:, None] + P) / (step + 1), LOGIT_EPS, 1 - LOGIT_EPS)
        losses = -(np.log(trial[pos]).sum(0) + np.log1p(-trial[neg]).sum(0)) / len(y)
        j = int(np.argmin(losses))                   # ties: the first column
        total += P[:, j]
        counts[members[j]] += 1
    return counts / iterations


@saved_kind
class RankMean(Combiner):
    """The mean of each column's rank among the training rows (its empirical CDF, read off ``quantiles``
    stored quantiles), for members whose scales disagree; the output ranks videos and is left to a calibrator.
    Fitted: ``reference_`` (quantiles, len(columns)), each column's training quantiles."""

    kind = "rank_mean"

    def __init__(self, columns: list[str], quantiles: int = 1001):
        self.columns, self.quantiles = columns, quantiles

    def fit(self, X: pd.DataFrame, y: np.ndarray, groups: np.ndarray | None = None) -> RankMean:
        P = X[list(self.columns)].to_numpy(np.float64)
        self.reference_ = np.quantile(P, np.linspace(0, 1, min(self.quantiles, len(P))), axis=0)
        self._fitted(y)
        return self

    def _p_fake(self, X: pd.DataFrame) -> np.ndarray:
        P = X[list(self.columns)].to_numpy(np.float64)
        grid = np.linspace(0, 1, len(self.reference_))
        ranks = [np.interp(P[:, j], self.reference_[:, j], grid) for j in range(P.shape[1])]
        return np.clip(np.mean(ranks, axis=0), PROBABILITY_EPS, 1 - PROBABILITY_EPS)

    def to_json(self) -> dict:
        return {"kind": self.kind, "columns": list(self.columns), "reference": self.reference_.tolist()}

    @classmethod
    def from_json(cls, obj: dict) -> RankMean:
        model = cls(obj["columns"])
        model.reference_ = np.asarray(obj["reference"], np.float64)
        if model.reference_.ndim != 2 or model.reference_.shape[1] != len(model.columns):
            raise ValueError(f"rank reference of shape {model.reference_.shape} for {len(model.columns)} columns")
        model._fitted(None)
        return model


class Average(Combiner):
    """The average of fitted combiners' P(FAKE), in probability or logit (``space``) space; e.g. the LightGBM
    and logistic stacks. ``members``: fitted combiners (not refitted here); ``names``: their method names,
    which is how a saved average refers to them."""

    kind = "average"

    def __init__(self, members: list, space: str = "probability", names: list[str] | None = None):
        self.members, self.space, self.names = members, space, names

    def to_json(self) -> dict:
        return {"kind": self.kind, "members": list(self.names), "space": self.space}

    def fit(self, X, y, groups=None) -> Average:
        self._fitted(y)
        return self

    def _p_fake(self, X: pd.DataFrame) -> np.ndarray:
        return average([m.predict_proba(X)[:, 1] for m in self.members], self.space)


class Column(Combiner):
    """One column as it is (e.g. the plain mean): nothing to learn."""

    kind = "column"

    def __init__(self, column: str):
        self.column = column

    def fit(self, X, y, groups=None) -> Column:
        self._fitted(y)
        return self

    def _p_fake(self, X: pd.DataFrame) -> np.ndarray:
        return X[self.column].to_numpy(np.float64)


class Alias:
    """Another saved method under a second name (the chosen method). Saved as ``{"kind": "alias", "method"}``."""

    kind = "alias"

    def __init__(self, method: str):
        self.method = method

    def to_json(self) -> dict:
        return {"kind": self.kind, "method": self.method}


def average(predictions: list[np.ndarray], space: str) -> np.ndarray:
    """(n,) mean of P(FAKE) columns in "probability" or "logit" space."""
    if space == "logit":
        return expit(np.mean([logit(p) for p in predictions], axis=0))
    return np.mean(predictions, axis=0)


class LightGBMStack(Combiner):
    """LightGBM on video features, optionally boosting from a linear base stack.

    ``params``: LightGBM parameters plus ``n_estimators`` and ``early_stopping_rounds``. ``base_columns``:
    probability columns (e.g. every ``<backbone>/<rule>``). When given, a linear stack on them (``base``:
    "logistic" or "weighted") is fitted first and LightGBM starts from its logit (``init_score``), so the trees
    only model what the linear stack misses; with no useful split the early-stopped booster keeps the base.
    ``monotone_columns``: P(FAKE) may only rise with each of these. ``fit`` early-stops on ``X_val``, ``y_val``
    when given (as scikit-learn's ``HistGradientBoostingClassifier.fit`` takes them: keyword-only); otherwise it
    trains ``n_rounds`` rounds (default ``params["n_estimators"]``).
    Fitted: ``base_`` (the linear stack or None), ``booster_``, ``best_iteration_``.
    """

    kind = "lightgbm"

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

    def fit(self, X: pd.DataFrame, y: np.ndarray, groups: np.ndarray | None = None, *,
            X_val: pd.DataFrame | None = None, y_val: np.ndarray | None = None) -> LightGBMStack:
        """Fit on ``X`` (n rows), ``y`` (n,); ``groups`` is accepted like the other combiners' and unused (the
        base stack takes a fixed C). ``X_val`` (m rows), ``y_val`` (m,): the rows to early-stop on."""
        self.base_ = None
        if self.base_columns:
            self.base_ = (LogisticStack(self.base_columns, self.base_c) if self.base == "logistic"
                          else WeightedBlend(self.base_columns)).fit(X, y)
        train = lgb.Dataset(self._matrix(X), y, init_score=self._init(X), feature_name=_safe_names(self.columns),
                            free_raw_data=False)
        callbacks, sets = [], []
        if X_val is not None:
            sets = [lgb.Dataset(self._matrix(X_val), y_val, init_score=self._init(X_val), reference=train)]
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
        return {"kind": self.kind, "columns": list(self.columns), "best_iteration": self.best_iteration_,
                "base": None if self.base_ is None else self.base_.to_json()}

    @classmethod
    def from_text(cls, text: str, obj: dict) -> LightGBMStack:
        model = cls(obj["columns"], {})
        model.booster_ = lgb.Booster(model_str=text)
        model.best_iteration_ = obj["best_iteration"]
        model.base_ = None
        if obj["base"] is not None:
            kind = obj["base"]["kind"]
            if kind not in (WeightedBlend.kind, LogisticStack.kind):
                raise ValueError(f"base stack of kind {kind!r}, expected {WeightedBlend.kind} or {LogisticStack.kind}")
            model.base_ = KINDS[kind].from_json(obj["base"])
            model.base_columns = model.base_.columns
        model._fitted(None)
        return model


def _safe_names(columns: list[str]) -> list[str]:
    return [c.replace("/", "__").replace(":", "_").replace(".", "p") for c in columns]
