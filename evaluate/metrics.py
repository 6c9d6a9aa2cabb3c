"""Video-level metrics and family-grouped bootstrap intervals.

Conventions: ``y`` is 1 for FAKE and 0 for REAL, ``p`` is P(FAKE); both are 1-D arrays of length n.
Metrics that need both classes return NaN when one is absent. What the config sets (the calibration error's bins,
``[evaluate] ece_bins``; the bootstrap's resamples, ``[evaluate] bootstrap``, and seed) has no default here: the
caller passes it. The constants below are definitions, not settings.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import average_precision_score, roc_curve

from common.metrics import KAGGLE_EPS, balanced_log_loss, both_classes, label_arrays, log_loss

__all__ = [
    "KAGGLE_EPS", "THRESHOLD", "CI_LEVEL", "METRIC_NAMES",
    "log_loss", "balanced_log_loss", "roc_auc", "average_precision", "eer", "brier", "ece",
    "accuracy", "precision", "recall", "specificity", "all_metrics",
    "grouped_bootstrap_indices", "bootstrap_values", "percentile_interval", "bootstrap_ci",
    "paired_bootstrap",
]

THRESHOLD = 0.5  # hard labels: FAKE when p > THRESHOLD (p == 0.5 counts as REAL)
CI_LEVEL = 0.95  # the bootstrap intervals' level, printed as "95 %" by every report
METRIC_NAMES = ("log_loss", "balanced_log_loss", "auc", "ap", "eer", "brier", "ece",
                "accuracy", "precision", "recall", "specificity")

Metric = Callable[[np.ndarray, np.ndarray], float]


# --- probabilistic metrics -------------------------------------------------------------------

def roc_auc(y, p) -> float:
    """ROC AUC of p against y; y, p: (n,). NaN if only one class is present."""
    y, p = label_arrays(y, p)
    if not both_classes(y):
        return float("nan")
    # Mann-Whitney U from mid-ranks (ties count one half): scikit-learn's value, fast enough to bootstrap
    ranks = rankdata(p)
    n_fake = int(y.sum())
    n_real = len(y) - n_fake
    return float((ranks[y == 1].sum() - n_fake * (n_fake + 1) / 2) / (n_fake * n_real))


def average_precision(y, p) -> float:
    """Average precision with FAKE as the positive class; y, p: (n,). NaN if only one class is present."""
    y, p = label_arrays(y, p)
    return float(average_precision_score(y, p)) if both_classes(y) else float("nan")


def eer(y, p) -> float:
    """Equal error rate; y, p: (n,). NaN if only one class is present.

    The rate where FPR == FNR (= 1 - TPR) on the ROC curve, linearly interpolated between the two
    ROC points where FPR - FNR changes sign (it runs from -1 at (0, 0) to +1 at (1, 1)).
    """
    y, p = label_arrays(y, p)
    if not both_classes(y):
        return float("nan")
    fpr, tpr, _ = roc_curve(y, p, drop_intermediate=False)
    fnr = 1.0 - tpr
    gap = fpr - fnr  # non-decreasing along the curve
    i = int(np.argmax(gap >= 0))  # first point at or past the crossing; i >= 1 since gap[0] == -1
    if gap[i] == 0:
        return float(fpr[i])
    t = -gap[i - 1] / (gap[i] - gap[i - 1])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def brier(y, p) -> float:
    """Brier score, mean of (p - y)^2; y, p: (n,)."""
    y, p = label_arrays(y, p)
    return float(np.mean((p - y) ** 2))


def ece(y, p, bins: int) -> float:
    """Expected calibration error with ``bins`` equal-width bins on [0, 1]; y, p: (n,).

    Row i goes to bin floor(p_i * bins) (p == 1 in the last bin); the result is the sum over
    bins of (n_bin / n) * |mean(y in bin) - mean(p in bin)|.
    """
    y, p = label_arrays(y, p)
    if y.size == 0:
        return float("nan")
    which = np.clip(np.floor(p * bins).astype(np.int64), 0, bins - 1)
    sum_y = np.bincount(which, weights=y.astype(np.float64), minlength=bins)
    sum_p = np.bincount(which, weights=p, minlength=bins)
    # n_bin/n * |sum_y/n_bin - sum_p/n_bin| = |sum_y - sum_p| / n (empty bins add 0)
    return float(np.sum(np.abs(sum_y - sum_p)) / y.size)


# --- hard-label metrics at THRESHOLD (FAKE when p > threshold) -------------------------------

def _confusion(y, p, threshold: float) -> tuple[int, int, int, int]:
    """(tp, fp, tn, fn) of the prediction FAKE when p > threshold."""
    y, p = label_arrays(y, p)
    pred = p > threshold
    fake = y == 1
    return (int(np.sum(pred & fake)), int(np.sum(pred & ~fake)),
            int(np.sum(~pred & ~fake)), int(np.sum(~pred & fake)))


def _ratio(num: int, den: int) -> float:
    return num / den if den else float("nan")


def accuracy(y, p, threshold: float = THRESHOLD) -> float:
    """Share of rows whose hard label (FAKE when p > threshold) equals y; y, p: (n,)."""
    tp, fp, tn, fn = _confusion(y, p, threshold)
    return _ratio(tp + tn, tp + fp + tn + fn)


def precision(y, p, threshold: float = THRESHOLD) -> float:
    """TP / (TP + FP) with FAKE when p > threshold; y, p: (n,). NaN when nothing is predicted FAKE."""
    tp, fp, _, _ = _confusion(y, p, threshold)
    return _ratio(tp, tp + fp)


def recall(y, p, threshold: float = THRESHOLD) -> float:
    """TP / (TP + FN), the FAKE detection rate; y, p: (n,). NaN when there are no FAKE rows."""
    tp, _, _, fn = _confusion(y, p, threshold)
    return _ratio(tp, tp + fn)


def specificity(y, p, threshold: float = THRESHOLD) -> float:
    """TN / (TN + FP), the REAL pass rate; y, p: (n,). NaN when there are no REAL rows."""
    _, fp, tn, _ = _confusion(y, p, threshold)
    return _ratio(tn, tn + fp)


def all_metrics(y, p, *, bins: int, eps: float = KAGGLE_EPS) -> dict[str, float]:
    """Every metric above on y, p: (n,), keyed by METRIC_NAMES, as python floats; ``bins`` for the ECE."""
    y, p = label_arrays(y, p)
    out = {
        "log_loss": log_loss(y, p, eps),
        "balanced_log_loss": balanced_log_loss(y, p, eps),
        "auc": roc_auc(y, p),
        "ap": average_precision(y, p),
        "eer": eer(y, p),
        "brier": brier(y, p),
        "ece": ece(y, p, bins),
        "accuracy": accuracy(y, p),
        "precision": precision(y, p),
        "recall": recall(y, p),
        "specificity": specificity(y, p),
    }
    return {k: float(out[k]) for k in METRIC_NAMES}


# --- family-grouped bootstrap ----------------------------------------------------------------

def grouped_bootstrap_indices(groups, n_boot: int, seed: int) -> list[np.ndarray]:
    """Row indices of ``n_boot`` family-grouped bootstrap replicates; groups: (n,) family ids.

    Each replicate draws as many families as there are, uniformly with replacement, and takes
    every row of each drawn family (a family drawn twice contributes its rows twice). Returns a
    list of ``n_boot`` int64 arrays of row indices into the n rows (lengths vary). Compute it once
    and pass it as ``indices=`` to compare many metrics and methods on the same replicates.
    """
    groups = np.asarray(groups).ravel()
    if groups.size == 0:
        raise ValueError("no rows to resample")
    _, family = np.unique(groups, return_inverse=True)
    family = family.ravel()
    rows_by_family = np.argsort(family, kind="stable")  # rows of family f are contiguous
    size = np.bincount(family)
    start = np.cumsum(size) - size
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, size.size, size=(n_boot, size.size)).ravel()
    length = size[drawn]
    # position k of the flat output belongs to drawn family j: start[j] + (k - first k of j)
    offset = np.repeat(start[drawn] - (np.cumsum(length) - length), length)
    rows = rows_by_family[np.arange(offset.size) + offset]
    cut = np.cumsum(length.reshape(n_boot, size.size).sum(axis=1))[:-1]
    return np.split(rows, cut) if n_boot else []


def bootstrap_values(y, p, metric: Metric, indices: Sequence[np.ndarray]) -> np.ndarray:
    """metric(y[idx], p[idx]) for each replicate idx in ``indices``; y, p: (n,) -> (n_boot,), NaN kept."""
    y, p = label_arrays(y, p)
    return np.array([metric(y[idx], p[idx]) for idx in indices], np.float64)


def percentile_interval(values, level: float = CI_LEVEL) -> tuple[float, float]:
    """Central percentile interval holding ``level`` of the non-NaN values; (nan, nan) if none."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    values = np.asarray(values, np.float64)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(lo), float(hi)


def _replicates(groups, n_boot: int | None, seed: int | None, indices) -> Sequence[np.ndarray]:
    if indices is not None:
        return indices
    if groups is None or n_boot is None or seed is None:
        raise ValueError("pass groups, n_boot and seed, or precomputed indices")
    return grouped_bootstrap_indices(groups, n_boot, seed)


def bootstrap_ci(y, p, groups, metric: Metric, n_boot: int | None = None, level: float = CI_LEVEL,
                 seed: int | None = None, indices: Sequence[np.ndarray] | None = None) -> tuple[float, float]:
    """Family-grouped percentile bootstrap interval (lo, hi) of metric(y, p); y, p, groups: (n,).

    Replicates where the metric is NaN (e.g. AUC on one class) are skipped. Pass ``indices`` (from
    grouped_bootstrap_indices), or groups, n_boot and seed.
    """
    values = bootstrap_values(y, p, metric, _replicates(groups, n_boot, seed, indices))
    return percentile_interval(values, level)


def paired_bootstrap(y, p_a, p_b, groups, metric: Metric, n_boot: int | None = None,
                     level: float = CI_LEVEL, seed: int | None = None,
                     indices: Sequence[np.ndarray] | None = None) -> dict:
    """Compare methods a and b on the same family-grouped replicates; y, p_a, p_b, groups: (n,).

    Returns ``diff`` = metric(y, p_a) - metric(y, p_b) on all rows, ``ci`` = [lo, hi] percentile
    interval of the per-replicate difference, and ``p_value`` = the share of replicates whose
    difference has the opposite sign to ``diff`` or is 0 (1.0 when diff is 0, NaN when diff is
    NaN). It is a bootstrap estimate of how often the direction of the difference does not hold,
    roughly a one-sided p-value in the observed direction, not an exact test. Replicates where
    either metric is NaN are skipped. Pass ``indices``, or groups, n_boot and seed.
    """
    replicates = _replicates(groups, n_boot, seed, indices)
    diff = float(metric(*label_arrays(y, p_a)) - metric(*label_arrays(y, p_b)))
    d = bootstrap_values(y, p_a, metric, replicates) - bootstrap_values(y, p_b, metric, replicates)
    d = d[~np.isnan(d)]
    if np.isnan(diff) or d.size == 0:
        p_value = float("nan")
    elif diff == 0:
        p_value = 1.0
    else:
        p_value = float(np.mean(np.sign(d) != np.sign(diff)))  # opposite sign or zero
    lo, hi = percentile_interval(d, level)
    return {"diff": diff, "ci": [lo, hi], "p_value": p_value}
