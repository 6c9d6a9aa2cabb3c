"""``python -m evaluate score`` and ``validate``: offline checks and scores of Kaggle-format submission files.

``score`` is an offline leaderboard: every file gets the report's metrics against a labels file, with a
family-grouped bootstrap interval for its log-loss. ``validate`` runs the checks Kaggle runs, against the names
of a sample submission, without labels.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from common.errors import DataError
from common.problems import Problems
from data.metadata import video_name
from data.submissions import (
    Predictions,
    check_names,
    listing,
    name_problems,
    read_labels,
    read_predictions,
    repeated_message,
)

from .metrics import KAGGLE_EPS, all_metrics, bootstrap_ci, grouped_bootstrap_indices, log_loss

KAGGLE_HEADER = ["filename", "label"]


def json_safe(obj):
    """NaN (e.g. AUC on one class) as null, so the output is valid JSON."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [json_safe(v) for v in obj]
    return None if isinstance(obj, float) and obj != obj else obj


def score_files(paths: list[str], labels_path: str, column: str | None, dedupe: str, n_boot: int,
                seed: int, ece_bins: int) -> tuple[dict, Problems]:
    """Metrics of each file against the labels, keyed by the path as given (``PATH[:COLUMN]``); every file must
    cover exactly the labelled videos. ``ece_bins``: the calibration error's bins (``[evaluate] ece_bins``)."""
    problems = Problems()
    labels = read_labels(labels_path, problems)
    y = labels.label.to_numpy(np.float64)
    groups = labels.family.reindex(labels.label.index).to_numpy()
    indices = grouped_bootstrap_indices(groups, n_boot, seed)
    out = {}
    for path in paths:
        pred = read_predictions(path, problems, dedupe=dedupe, column=column)
        check_names(pred, labels.label.index, f"the labels ({labels_path})")
        p = pred.values.reindex(labels.label.index).to_numpy(np.float64)
        metrics = all_metrics(y, p, bins=ece_bins)
        metrics["log_loss_ci"] = list(bootstrap_ci(y, p, groups, log_loss, indices=indices))
        out[path] = {"n_videos": len(p), "duplicates_averaged": pred.duplicates, **metrics}
    return out, problems


def validate(path: str, sample_path: str) -> tuple[Predictions, pd.Index]:
    """Kaggle's checks: a comma-separated ``filename,label`` header, the sample's names exactly once each and
    written as in the sample, values in [0, 1] and no NaN. Returns the predictions and the sample's names in order.
    Problems with the names (repeated, missing, extra) are reported together in one line."""
    sample = read_sample(sample_path)
    pred = _read_kaggle(path)
    problems = ([repeated_message(pred.repeated, pred.duplicates)] if pred.duplicates else []) + \
        name_problems(pred, sample.map(video_name), f"the sample ({sample_path})")
    if problems:
        raise DataError(f"{path}: " + "; ".join(problems))
    unlike = pred.filenames[~pred.filenames.isin(sample)]
    if len(unlike):
        raise DataError(f"{path}:{unlike.index[0] + 2}: filename {unlike.iloc[0]!r} is not written as in the sample")
    return pred, sample


def read_sample(path: str) -> pd.Index:
    """The video names of a sample submission (``filename,label``), in its row order."""
    pred = _read_kaggle(path)
    if pred.duplicates:
        raise DataError(f"{path}: {repeated_message(pred.repeated, pred.duplicates)}")
    if not len(pred.filenames):
        raise DataError(f"{path}: a sample submission without a single video row")
    return pd.Index(pred.filenames)


def _read_kaggle(path: str) -> Predictions:
    """A file in Kaggle's format: header exactly ``filename,label``, comma-separated, only video rows."""
    problems = Problems()
    pred = read_predictions(path, problems, header=KAGGLE_HEADER)
    with open(path, encoding="utf-8-sig") as f:
        if "\t" in f.readline():
            raise DataError(f"{path}: tab-separated; Kaggle expects a comma-separated 'filename,label' file")
    dropped = [name for kind, names in problems.as_dict().items() if "name no video" in kind for name in names]
    if dropped:
        raise DataError(f"{path}: {len(dropped)} rows name no video: {listing(dropped)}")
    return pred


def format_table(results: dict) -> str:
    """A leaderboard sorted by log-loss: one line per file."""
    cols = ["log_loss", "balanced_log_loss", "auc", "ap", "eer", "brier", "ece", "accuracy"]
    width = max([len("file")] + [len(Path(k).name) for k in results]) + 2
    lines = [f"{'file':<{width}}{'videos':>7}{'log-loss':>10}{'95% CI':>18}"
             + "".join(f"{c.replace('balanced_log_loss', 'balanced'):>11}" for c in cols[1:])]
    for path, m in sorted(results.items(), key=lambda kv: kv[1]["log_loss"]):
        lo, hi = m["log_loss_ci"]
        lines.append(f"{Path(path).name:<{width}}{m['n_videos']:>7}{m['log_loss']:>10.4f}{f'[{lo:.3f}, {hi:.3f}]':>18}"
                     + "".join(f"{m[c]:>11.4f}" for c in cols[1:]))
    lines.append(f"log-loss: natural log, y = 1 for FAKE, predictions clipped to [{KAGGLE_EPS:g}, 1 - {KAGGLE_EPS:g}]; "
                 "95% CI: family-grouped bootstrap")
    return "\n".join(lines)
