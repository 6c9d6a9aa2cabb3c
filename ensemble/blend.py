"""``python -m ensemble blend``: blend Kaggle submission files from any models, with family-grouped CV.

Every method is scored by calibrated out-of-fold log-loss over folds that keep each family (a REAL original and
its fakes) whole; the best is refit on all labelled videos and written as a submission. The minimum of many
noisy CV figures is optimistic, so the whole choice is also scored by nested CV: the figure to expect.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit
from tqdm import tqdm

from common.atomic import atomic_path, write_json
from common.errors import DataError
from common.metrics import log_loss
from common.problems import Problems
from data.splits import grouped_assign
from data.submissions import read_labels, read_predictions

from .calibration import logit
from .selection import (
    Candidate,
    choose,
    fit_candidates,
    linear_candidates,
    nested,
    one_blas_thread,
)
from .settings import EnsembleSettings
from .stackers import Combiner, LightGBMStack, RankMean

LGB_SMALL = {"num_leaves": 4, "learning_rate": 0.05, "n_estimators": 100, "min_child_samples": 20,
             "subsample": 0.8, "subsample_freq": 1, "colsample_bytree": 1.0, "reg_lambda": 1.0,
             "early_stopping_rounds": 20}


class Fixed(Combiner):
    """A method with nothing to learn: ``fn`` maps the columns to P(FAKE) (n,)."""

    def __init__(self, fn):
        self.fn = fn

    def fit(self, X, y, groups=None):
        self._fitted(y)
        return self

    def _p_fake(self, X):
        return self.fn(X)


class Prior(Combiner):
    """The training rows' FAKE share, for every video. Fitted: ``p_``."""

    def fit(self, X, y, groups=None):
        self.p_ = float(np.mean(y))
        self._fitted(y)
        return self

    def _p_fake(self, X):
        return np.full(len(X), self.p_)


def methods(columns: list[str], settings: EnsembleSettings, seed: int, c: float | None = None
            ) -> dict[str, Candidate]:
    """{method name: candidate} of every blending method tried, in order (an average after its members). The
    prior, single files and fixed averages are references: calibrated and scored, never chosen.
    ``c``: a fixed C for the logistic and spline stacks instead of the config's grid."""
    return {
        "prior": Candidate(Prior, reference=True),
        **{f"file:{col}": Candidate(lambda col=col: Fixed(lambda X: X[col].to_numpy()), reference=True)
           for col in columns},
        "mean": Candidate(lambda: Fixed(lambda X: X[columns].mean(axis=1).to_numpy()), reference=True),
        "logit_mean": Candidate(lambda: Fixed(lambda X: expit(logit(X[columns].to_numpy()).mean(axis=1))),
                                reference=True),
        "rank_mean": Candidate(lambda: RankMean(columns), reference=True),
        **linear_candidates(columns, settings, seed, c),
        "lightgbm": Candidate(lambda: LightGBMStack(columns, LGB_SMALL, seed), early_stopping=True),
        "average:lightgbm+logistic": Candidate(members=("lightgbm", "logistic")),
        "average:lightgbm+spline": Candidate(members=("lightgbm", "spline")),
        "average:logit:lightgbm+logistic+spline": Candidate(members=("lightgbm", "logistic", "spline"),
                                                            space="logit"),
    }


def run_blend(specs: list[str], labels_path: str, out: Path, fill: str | None, n_folds: int, c: float | None,
              seed: int, settings: EnsembleSettings) -> dict:
    """Score every method by family-grouped ``n_folds``-fold CV (fold assignment seeded by ``seed``), score the
    whole choice by nested CV, refit the chosen method on all labelled videos and write ``blend.json``,
    ``oof.csv`` (nested OOF predictions) and ``submission.csv``."""
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
    candidates = methods(names, settings, seed, c)
    eps = list(settings.clip_eps)
    bar = tqdm(total=n_folds + 1, desc="blend: nested folds, then all videos", unit="fold", leave=False)
    with one_blas_thread():
        nested_oof, per_fold = nested(candidates, Xl, y, folds, family, eps, progress=lambda *_: bar.update())
        fitted = fit_candidates(candidates, Xl, y, folds, family, eps)
    bar.update()
    bar.close()
    best = choose(fitted, candidates)
    report = {"videos": int(labelled.sum()), "families": len(set(family)), "folds": n_folds, "seed": seed,
              "fake_share": prior, "files": {n: p.path for n, p in zip(names, preds)},
              "methods": {name: {"reference": candidates[name].reference,
                                 "log_loss_raw": round(log_loss(y, f.oof), 5), "calibrator": f.calibrator.name,
                                 "log_loss": round(f.loss, 5)} for name, f in fitted.items()},
              "chosen": best,
              "nested": {"log_loss": round(log_loss(y, nested_oof), 5), "chosen_per_fold": per_fold}}
    out.mkdir(parents=True, exist_ok=True)
    submission = pd.DataFrame({"filename": X.index, "label": fitted[best].predict(X)})
    for target, frame in (("oof.csv", pd.DataFrame({"filename": Xl.index, "label": nested_oof})),
                          ("submission.csv", submission)):
        with atomic_path(out / target) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.6f")
    write_json(out / "blend.json", report)
    return report
