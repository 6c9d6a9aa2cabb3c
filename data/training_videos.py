"""The videos that trained a dataset's models, recorded beside them, so that scoring another dataset with those
models (``python -m evaluate transfer``) can refuse one that shares videos or families with their training data.

``extract train`` writes ``models/<NAME>/training_videos.json`` (the labelled ``train`` split: the backbones and
the PCA of their embeddings) and ``ensemble fit`` writes ``models/<NAME>/ensemble/training_videos.json`` (the
``blend`` split: the combiners, calibrators and prior). Each is a :class:`TrainingRecord`, a JSON object:
``split``, ``source`` (the videos table read), ``n_videos`` and three sorted lists of names: ``videos``,
``originals`` (the REAL videos the FAKEs derive from) and ``families`` (see ``data.families``). About 30 bytes a
video: a few MB for DFDC.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from common.atomic import write_json
from common.errors import DataError
from common.schema import read_json_object

RECORD_FILE = "training_videos.json"
NAME_LISTS = ("videos", "originals", "families")


@dataclass(frozen=True)
class TrainingRecord:
    """The labelled videos of one split that trained a dataset's models; :meth:`to_json` is the file's content."""

    split: str
    source: str                   # the videos table read
    n_videos: int
    videos: tuple[str, ...]       # sorted names, as the three below
    originals: tuple[str, ...]    # the REAL videos the FAKEs derive from
    families: tuple[str, ...]

    @classmethod
    def of(cls, videos: pd.DataFrame, split: str, source: Path) -> TrainingRecord:
        """The record of the labelled videos of ``split`` in ``videos`` (one row per video: video, label, split,
        family and, when present, original)."""
        part = videos[(videos["split"] == split) & videos["label"].notna()]
        originals = part["original"].dropna() if "original" in part else pd.Series([], dtype=object)
        return cls(split, str(source), len(part), tuple(sorted(part["video"].astype(str))),
                   tuple(sorted(set(originals.astype(str)))), tuple(sorted(set(part["family"].astype(str)))))

    def to_json(self) -> dict:
        return {"split": self.split, "source": self.source, "n_videos": self.n_videos,
                **{key: list(getattr(self, key)) for key in NAME_LISTS}}

    def write(self, folder: Path) -> None:
        """``folder/training_videos.json``, written atomically."""
        write_json(folder / RECORD_FILE, self.to_json())

    @classmethod
    def from_json(cls, record: dict, path: Path, hint: str) -> TrainingRecord:
        """The record in ``record`` (read from ``path``), checked: a damaged one is a one-line error naming the
        entry and ending with ``hint`` (how to write it again)."""
        for key in ("split", "source", "n_videos", *NAME_LISTS):
            if key not in record:
                raise DataError(f"{path}: no {key!r} entry; not a training-video record ({hint})")
        if not isinstance(record["split"], str) or not record["split"]:
            raise DataError(f"{path}: split = {record['split']!r}, expected a split name; {hint}")
        if not isinstance(record["source"], str):
            raise DataError(f"{path}: source = {record['source']!r}, expected the path of a videos table; {hint}")
        for key in NAME_LISTS:
            names = record[key]
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise DataError(f"{path}: {key!r} must be a list of video names; {hint}")
        if not record["videos"]:       # models are never trained on no video: an emptied record would refuse nothing
            raise DataError(f"{path}: 'videos' is empty: not the record of the videos that trained these models; "
                            f"{hint}")
        n = record["n_videos"]
        if not isinstance(n, int) or isinstance(n, bool) or n != len(record["videos"]):
            raise DataError(f"{path}: n_videos = {n!r} but {len(record['videos'])} videos are listed; {hint}")
        return cls(record["split"], record["source"], n, *(tuple(record[key]) for key in NAME_LISTS))

    @classmethod
    def read(cls, folder: Path, hint: str) -> TrainingRecord:
        """``folder/training_videos.json``; a missing one is a one-line error ending with ``hint``."""
        path = folder / RECORD_FILE
        if not path.exists():
            raise DataError(f"{path}: not found: these models predate the record of their training videos; {hint}")
        return cls.from_json(read_json_object(path, hint), path, hint)

    def names(self) -> set[str]:
        """Every video, original and family name of the record."""
        return {name for key in NAME_LISTS for name in getattr(self, key)}


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
