"""Family-grouped, label-stratified train / blend / test splits and K folds, deterministic given the seed."""
from __future__ import annotations

import numpy as np
import pandas as pd

from common.errors import DataError

from .settings import SPLITS

UNLABELED = "unlabeled"


def grouped_assign(groups: np.ndarray, labels: np.ndarray, fractions: np.ndarray,
                   rng: np.random.Generator) -> np.ndarray:
    """Assign whole groups to bins so that each bin holds ``fractions`` of each label.

    groups: (n,) group id per row; labels: (n,) 0/1 per row; fractions: (k,) summing to 1.
    Returns (n,) bin index per row. Groups go largest first (ties in seeded random order), each to the
    bin where it least increases the chi-square gap sum((filled - target)^2 / target) over bins and labels,
    each label weighted by its share, so bins fill in proportion to their targets.
    """
    uniq, inverse = np.unique(groups, return_inverse=True)
    counts = np.zeros((len(uniq), 2))
    np.add.at(counts, (inverse, labels.astype(int)), 1)
    totals = np.maximum(counts.sum(0), 1)
    target = fractions[:, None] * counts.sum(0)[None, :]
    filled = np.zeros_like(target)
    order = rng.permutation(len(uniq))
    order = order[np.argsort(-counts[order].sum(1), kind="stable")]
    allowed = fractions > 0
    assigned = np.empty(len(uniq), dtype=int)
    scale = np.maximum(target, 1e-9) * totals
    for g in order:
        n = counts[g]
        cost = (n * (2 * (filled - target) + n) / scale).sum(1)
        cost[~allowed] = np.inf
        b = int(np.argmin(cost))
        assigned[g] = b
        filled[b] += n
    return assigned[inverse]


def assign_splits(videos: pd.DataFrame, fractions: dict[str, float], folds: int, seed: int) -> pd.DataFrame:
    """Add ``split`` (train/blend/test, or "unlabeled") and ``fold`` (0..folds-1, -1 when unlabeled).

    videos: one row per video with ``family`` and ``label`` (1, 0 or <NA>). Labelled videos are split by
    family; folds are family-grouped inside each split. Unlabelled videos (e.g. Kaggle's test set) get
    split "unlabeled".
    """
    rng = np.random.default_rng(seed)
    out = videos.copy()
    out["split"] = UNLABELED
    out["fold"] = -1
    labelled = out["label"].notna().to_numpy()
    if labelled.any():
        sub = out.loc[labelled]
        bins = grouped_assign(sub["family"].to_numpy(), sub["label"].to_numpy(int),
                              np.array([fractions[s] for s in SPLITS]), rng)
        out.loc[labelled, "split"] = np.array(SPLITS)[bins]
        for name in SPLITS:
            rows = labelled & (out["split"] == name).to_numpy()
            if rows.any():
                sub = out.loc[rows]
                out.loc[rows, "fold"] = grouped_assign(sub["family"].to_numpy(), sub["label"].to_numpy(int),
                                                       np.full(folds, 1 / folds), rng)
    out["fold"] = out["fold"].astype("int16")
    return out


def check_no_family_leak(videos: pd.DataFrame) -> None:
    """Raise DataError if any family of labelled videos crosses a split or fold boundary."""
    labelled = videos[videos["split"] != UNLABELED]
    per_family = labelled.groupby("family")[["split", "fold"]].nunique()
    leaks = per_family[(per_family["split"] > 1) | (per_family["fold"] > 1)]
    if len(leaks):
        family = leaks.index[0]
        rows = labelled[labelled["family"] == family]
        where = ", ".join(f"{v}:{s}/{f}" for v, s, f in rows[["video", "split", "fold"]].itertuples(index=False))
        raise DataError(f"family leak: {len(leaks)} families cross a split or fold boundary, e.g. {family} "
                        f"({where})")
