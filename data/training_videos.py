"""The videos that trained a dataset's models, recorded beside them, so that scoring another dataset with those
models (``python -m evaluate transfer``) can refuse one that shares videos or families with their training data.

``extract train`` writes ``models/<NAME>/training_videos.json`` (the labelled ``train`` split: the backbones and
the PCA of their embeddings) and ``ensemble fit`` writes ``models/<NAME>/ensemble/training_videos.json`` (the
``blend`` split: the combiners, calibrators and prior). Each is a JSON object: ``split``, ``source`` (the videos
table read), ``n_videos`` and three sorted lists of names: ``videos``, ``originals`` (the REAL videos the FAKEs
derive from) and ``families`` (see ``data.families``). About 30 bytes a video: a few MB for DFDC.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from common.errors import DataError
from common.schema import read_json_object

RECORD_FILE = "training_videos.json"
NAME_LISTS = ("videos", "originals", "families")


def training_record(videos: pd.DataFrame, split: str, source: Path) -> dict:
    """The record of the labelled videos of ``split`` in ``videos`` (one row per video: video, label, split,
    family and, when present, original)."""
    part = videos[(videos["split"] == split) & videos["label"].notna()]
    originals = part["original"].dropna() if "original" in part else pd.Series([], dtype=object)
    return {"split": split, "source": str(source), "n_videos": len(part),
            "videos": sorted(part["video"].astype(str)), "originals": sorted(set(originals.astype(str))),
            "families": sorted(set(part["family"].astype(str)))}


def read_record(path: Path, hint: str) -> dict:
    """A record :func:`training_record` made (written as JSON); a missing one is a one-line error ending with ``hint`` (how to
    write it), a damaged one a one-line error naming the entry."""
    if not path.exists():
        raise DataError(f"{path}: not found: these models predate the record of their training videos; {hint}")
    record = read_json_object(path, hint)
    for key in ("split", *NAME_LISTS):
        if key not in record:
            raise DataError(f"{path}: no {key!r} entry; not a training-video record ({hint})")
    if not isinstance(record["split"], str) or not record["split"]:
        raise DataError(f"{path}: split = {record['split']!r}, expected a split name; {hint}")
    for key in NAME_LISTS:
        names = record[key]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DataError(f"{path}: {key!r} must be a list of video names; {hint}")
    if not record["videos"]:       # models are never trained on no video: an emptied record would refuse nothing
        raise DataError(f"{path}: 'videos' is empty: not the record of the videos that trained these models; {hint}")
    return record


def known_names(records: list[dict]) -> set[str]:
    """Every video, original and family name of ``records``."""
    return {name for record in records for key in NAME_LISTS for name in record[key]}


def overlapping(videos: pd.DataFrame, names: set[str]) -> np.ndarray:
    """(n,) bool: the row's video, its original (when the table has that column) or its family is in ``names``."""
    columns = [c for c in ("video", "original", "family") if c in videos]
    return np.logical_or.reduce([videos[c].isin(names).to_numpy() for c in columns])


def refuse_overlap(path: Path, videos: pd.DataFrame, names: set[str], what: str) -> None:
    """A one-line error naming the first row of ``videos`` (read from ``path``) that overlaps ``names`` (the
    training videos of ``what``) and how many rows do; nothing when none does."""
    bad = overlapping(videos, names)
    if not bad.any():
        return
    i = int(np.flatnonzero(bad)[0])
    row = videos.iloc[i]
    hits = [f"its {c} {row[c]}" if c != "video" else f"video {row[c]}" for c in ("video", "original", "family")
            if c in videos and row[c] in names]
    raise DataError(f"{path}: row {i} ({row['video']}): {' and '.join(hits)} among the training videos of {what}; "
                    f"{int(bad.sum())} of its {len(videos)} videos overlap them: score a dataset disjoint from "
                    "their training data")
