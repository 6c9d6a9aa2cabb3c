"""``python -m ensemble blend``: blend Kaggle submission files from any models, with family-grouped CV.

Every method is scored by calibrated out-of-fold log-loss over folds that keep each family (a REAL original and
its fakes) whole; the best is refit on all labelled videos and written as a submission. The minimum of many
noisy CV figures is optimistic, so the whole choice is also scored by nested CV: the figure to expect.
"""
from __future__ import annotations

import sys
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
from data.submissions import Labels, Predictions, listing, read_labels, read_predictions, split_spec

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
        "lightgbm": Candidate(lambda: LightGBMStack(columns, settings.blend.lightgbm, seed), early_stopping=True),
        "average:lightgbm+logistic": Candidate(members=("lightgbm", "logistic")),
        "average:lightgbm+spline": Candidate(members=("lightgbm", "spline")),
        "average:logit:lightgbm+logistic+spline": Candidate(members=("lightgbm", "logistic", "spline"),
                                                            space="logit"),
    }


def count(n: int, noun: str) -> str:
    """``1 video``, ``2 videos``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def column_names(specs: list[str], preds: list[Predictions]) -> list[str]:
    """A distinct name per prediction column: the file's name, else its path; with ``:COLUMN`` where one file
    gives two columns. The same column of the same file given twice (under two spellings) is an error."""
    columns = [split_spec(s)[1] for s in specs]
    paths = [p.path for p in preds]
    for names in ([Path(p).name for p in paths], paths, [f"{Path(p).name}:{c}" for p, c in zip(paths, columns)],
                  [f"{p}:{c}" for p, c in zip(paths, columns)]):
        if len(set(names)) == len(names):
            return names
    i = next(i for i, n in enumerate(names) if names.count(n) > 1)
    j = names.index(names[i], i + 1)
    raise DataError(f"--predictions: {specs[i]} is given twice" if specs[i] == specs[j] else
                    f"--predictions: {specs[i]} and {specs[j]} are the same column of one file")


def label_warnings(labels: Labels, labels_path: str) -> list[str]:
    """Warnings about the labels file: empty label cells (those videos are predicted, not scored), and no
    family links (every video its own family: grouped folds cannot keep a REAL video with its fakes)."""
    lines = []
    if labels.unlabelled:
        where = [f"{v} ({src})" for v, src in labels.unlabelled.items()]
        lines.append(f"{labels_path}: {count(len(where), 'video')} with an empty label (predicted, not scored): "
                     f"{listing(where)}")
    if labels.family.nunique() == len(labels.family):
        lines.append(f"{labels_path}: no video names an original, so every video is its own family; the folds "
                     "may split a REAL video from its fakes and the CV figures are optimistic on DFDC-like data "
                     "(add an 'original' column)")
    return lines


def run_blend(specs: list[str], labels_path: str, out: Path, fill: str | None, n_folds: int, c: float | None,
              seed: int, settings: EnsembleSettings) -> dict:
    """Score every method by family-grouped ``n_folds``-fold CV (fold assignment seeded by ``seed``), score the
    whole choice by nested CV, refit the chosen method on all labelled videos and write ``blend.json``,
    ``oof.csv`` (nested OOF predictions) and ``submission.csv``. Both files are clipped to ``[eps, 1 - eps]``
    (``[ensemble.blend] eps``) and the nested figure is the log-loss of ``oof.csv``: it describes the file
    submitted. The arguments are checked by the caller (``cmd_blend``)."""
    problems = Problems()
    preds = [read_predictions(s, problems) for s in specs]
    labels = read_labels(labels_path, problems)
    names = column_names(specs, preds)
    all_videos = sorted(set(labels.label.index).union(*[p.values.index for p in preds]))
    X = pd.DataFrame(index=all_videos)
    prior = float(labels.label.mean())
    notes = label_warnings(labels, labels_path)
    for name, p in zip(names, preds):
        missing = labels.label.index.difference(p.values.index)
        if len(missing) and fill != "prior":
            raise DataError(f"{p.path}: {count(len(missing), 'labelled video')} missing (e.g. {missing[0]}); "
                            "pass --fill prior to predict the FAKE share for them")
        if len(missing):
            notes.append(f"{p.path}: {count(len(missing), 'labelled video')} missing (filled with the prior "
                         f"{prior:.3f}): {listing(missing)}")
        extra = p.values.index.difference(labels.label.index).difference(list(labels.unlabelled))
        if len(extra):
            notes.append(f"{p.path}: {count(len(extra), 'video')} without a label (predicted, not scored): "
                         f"{listing(extra)}")
        X[name] = p.values.reindex(all_videos).fillna(prior)

    labelled = X.index.isin(labels.label.index)
    Xl = X[labelled]
    y = labels.label.reindex(Xl.index).to_numpy().astype(int)
    family = labels.family.reindex(Xl.index).to_numpy()
    if len(set(y)) < 2 or len(set(family)) < n_folds:
        raise DataError(f"{labels_path}: {len(set(family))} families and {len(set(y))} class(es) of labelled videos; "
                        f"{n_folds}-fold CV needs both classes and at least {n_folds} families")
    problems.warn()                     # after the last check: an error is one line
    for line in notes:
        print(f"warning: {line}", file=sys.stderr)
    folds = grouped_assign(family, y, np.full(n_folds, 1 / n_folds), np.random.default_rng(seed))
    candidates = methods(names, settings, seed, c)
    clip_eps = list(settings.clip_eps)
    bar = tqdm(total=n_folds + 1, desc="blend: nested folds, then all videos", unit="fold", leave=False)
    with one_blas_thread():
        nested_oof, per_fold = nested(candidates, Xl, y, folds, family, clip_eps, progress=lambda *_: bar.update())
        fitted = fit_candidates(candidates, Xl, y, folds, family, clip_eps)
    bar.update()
    bar.close()
    best = choose(fitted, candidates)
    eps = settings.blend.eps            # oof.csv and submission.csv hold the same range: the figure is the file's
    nested_oof = np.clip(nested_oof, eps, 1 - eps)
    report = {"videos": int(labelled.sum()), "families": len(set(family)), "folds": n_folds, "seed": seed,
              "fake_share": prior, "files": {n: p.path for n, p in zip(names, preds)},
              "methods": {name: {"reference": candidates[name].reference,
                                 "log_loss_raw": round(log_loss(y, f.oof), 5), "calibrator": f.calibrator.name,
                                 "log_loss": round(f.loss, 5)} for name, f in fitted.items()},
              "chosen": best,
              "nested": {"log_loss": round(log_loss(y, nested_oof), 5), "chosen_per_fold": per_fold}}
    out.mkdir(parents=True, exist_ok=True)
    submission = pd.DataFrame({"filename": X.index, "label": np.clip(fitted[best].predict(X), eps, 1 - eps)})
    for target, frame in (("oof.csv", pd.DataFrame({"filename": Xl.index, "label": nested_oof})),
                          ("submission.csv", submission)):
        with atomic_path(out / target) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.6f")
    write_json(out / "blend.json", report)
    return report
