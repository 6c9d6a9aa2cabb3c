"""``python -m ensemble blend``: blend Kaggle submission files from any models, with family-grouped CV.

Every method is scored by out-of-fold log-loss over folds that keep each family (a REAL original and its fakes)
whole; the best is refit on all labelled videos and written as a submission.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from common.atomic import atomic_path, write_json
from common.errors import DataError
from common.metrics import log_loss
from common.problems import Problems
from data.splits import grouped_assign
from data.submissions import read_labels, read_predictions

from .calibration import logit
from .crossfit import cross_fit
from .stackers import Combiner, LightGBMStack, LogisticStack, WeightedBlend

LGB_SMALL = {"num_leaves": 4, "learning_rate": 0.05, "n_estimators": 100, "min_child_samples": 20,
             "subsample": 0.8, "subsample_freq": 1, "colsample_bytree": 1.0, "reg_lambda": 1.0,
             "early_stopping_rounds": 20}


class Fixed(Combiner):
    """A method with nothing to learn: ``fn`` maps the columns to P(FAKE) (n,)."""

    def __init__(self, fn):
        self.fn = fn

    def fit(self, X, y):
        self._fitted(y)
        return self

    def _p_fake(self, X):
        return self.fn(X)


class Prior(Combiner):
    """The training rows' FAKE share, for every video. Fitted: ``p_``."""

    def fit(self, X, y):
        self.p_ = float(np.mean(y))
        self._fitted(y)
        return self

    def _p_fake(self, X):
        return np.full(len(X), self.p_)


def methods(columns: list[str], c: float, seed: int) -> dict:
    """{method name: factory} of every blending method tried."""
    return {
        "prior": Prior,
        **{f"file:{col}": (lambda col=col: Fixed(lambda X: X[col].to_numpy())) for col in columns},
        "mean": lambda: Fixed(lambda X: X[columns].mean(axis=1).to_numpy()),
        "logit_mean": lambda: Fixed(lambda X: 1 / (1 + np.exp(-logit(X[columns].to_numpy()).mean(axis=1)))),
        "weighted": lambda: WeightedBlend(columns),
        f"logistic:C={c:g}": lambda: LogisticStack(columns, c),
        "lightgbm": lambda: LightGBMStack(columns, LGB_SMALL, seed),
    }


def run_blend(specs: list[str], labels_path: str, out: Path, fill: str | None, n_folds: int, c: float,
              seed: int) -> dict:
    problems = Problems()
    if len(set(specs)) != len(specs):
        raise DataError(f"--predictions: {next(s for s in specs if specs.count(s) > 1)} is given twice")
    preds = [read_predictions(s, problems) for s in specs]
    labels = read_labels(labels_path, problems)
    names = [Path(p.path).name for p in preds]
    if len(set(names)) != len(names):
        names = [p.path for p in preds]
    videos = sorted(set(labels.label.index).union(*[p.values.index for p in preds]))
    X = pd.DataFrame(index=videos)
    prior = float(labels.label.mean())
    for name, p in zip(names, preds):
        missing = labels.label.index.difference(p.values.index)
        if len(missing) and fill != "prior":
            raise DataError(f"{p.path}: {len(missing)} labelled videos missing (e.g. {missing[0]}); "
                            "pass --fill prior to predict the FAKE share for them")
        if len(missing):
            problems.add(f"videos missing from {p.path} (filled with the prior {prior:.3f})", ", ".join(missing))
        extra = p.values.index.difference(labels.label.index)
        if len(extra):
            problems.add(f"videos in {p.path} without a label (predicted, not scored)", ", ".join(extra))
        X[name] = p.values.reindex(videos).fillna(prior)
    problems.warn()

    labelled = X.index.isin(labels.label.index)
    Xl = X[labelled]
    y = labels.label.reindex(Xl.index).to_numpy().astype(int)
    family = labels.family.reindex(Xl.index).to_numpy()
    if len(set(y)) < 2 or len(set(family)) < n_folds:
        raise DataError(f"{labels_path}: {len(set(family))} families and {len(set(y))} class(es) of labelled videos; "
                        f"{n_folds}-fold CV needs both classes and at least {n_folds} families")
    folds = grouped_assign(family, y, np.full(n_folds, 1 / n_folds), np.random.default_rng(seed))
    report = {"videos": int(labelled.sum()), "families": int(len(set(family))), "folds": n_folds,
              "fake_share": prior, "files": {n: p.path for n, p in zip(names, preds)}, "methods": {}}
    oofs = {}
    for name, make in methods(names, c, seed).items():
        oofs[name] = cross_fit(make, Xl, y, folds).oof
        report["methods"][name] = round(log_loss(y, oofs[name]), 5)
    best = min(report["methods"], key=report["methods"].get)
    report["chosen"] = best
    final = methods(names, c, seed)[best]().fit(Xl, y)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "blend.json", report)
    submission = pd.DataFrame({"filename": X.index, "label": final.predict_proba(X)[:, 1]})
    for target, frame in (("oof.csv", pd.DataFrame({"filename": Xl.index, "label": oofs[best]})),
                          ("submission.csv", submission)):
        with atomic_path(out / target) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.6f")
    return report
