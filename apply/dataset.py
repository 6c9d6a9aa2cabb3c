"""A prepared dataset B scored by the models of A: B's feature cache under A's backbones, then one row per video of
B with every method of A's saved ensemble (``python -m evaluate transfer`` reports on it).

- :func:`open_dataset`: B's videos table, refused when a video of B (or its original, or its family) is among the
  videos that trained A's models (``data.training_videos``: A's train split for the backbones, its blend split
  for the ensemble);
- :func:`extract_features`: ``<features>/<backbone>.parquet``, written in resumable chunks by the code of
  ``extract features``, each backbone's input view read from its model card;
- :func:`predict_videos`: the predictions table, and :func:`write_predictions`: ``videos.parquet`` and
  ``transfer.json`` (models, dataset, prior, submitted method, backbones).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from common.atomic import atomic_dir, write_json
from common.executor import ExecutorSpec
from data.tables import load_videos
from data.training_videos import refuse_overlap
from ensemble.fit import MANIPULATION, META
from extract.cache import check_features

from .models import Models

META_FILE = "transfer.json"
VIDEOS_PER_BATCH = 4096        # videos whose frames (every backbone's rows and embeddings) are in memory at a time


@dataclass(frozen=True)
class Dataset:
    """B to score with A's models: its name, prepared tables folder and videos table (one row per video)."""

    models: Models
    name: str
    interim: Path
    videos: pd.DataFrame


def open_dataset(models: Models, name: str, interim_root: Path) -> Dataset:
    """B's videos table, checked disjoint from the videos that trained ``models`` (a one-line error otherwise)."""
    interim = interim_root / name
    videos = load_videos(interim)
    records = models.training_videos()
    names = set().union(*(r.names() for r in records))
    refuse_overlap(interim / "videos.parquet", videos, names,
                   f"{models.folder} (its {' and '.join(r.split for r in records)} splits)")
    return Dataset(models, name, interim, videos)


def extract_features(d: Dataset, config: dict, features_dir: Path, executor: ExecutorSpec) -> dict[str, Path]:
    """Every backbone of A over every crop of B, into ``features_dir`` (resumable chunks, then one file each)."""
    from extract.features import Shard, extract_backbone
    from extract.settings import load_settings as extract_settings

    settings = extract_settings(config)
    files = {}
    with executor.open() as ex:
        for backbone in d.models.saved.backbones:
            files[backbone] = extract_backbone(d.models.spec(backbone), settings, d.interim, d.models.folder,
                                               features_dir, Shard(0, 1), ex)
    return files


def read_frames(path: Path, names: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows of ``names`` in a feature file: (video, frame, face, score table (n rows), embeddings (n, D)),
    checked (errors name the file; a row number counts rows of these videos only)."""
    return check_features(path, pq.read_table(path, filters=[("video", "in", names)]))


def predict_videos(d: Dataset, files: dict[str, Path]) -> pd.DataFrame:
    """One row per video of B, sorted by video: the metadata columns, then every method of A's saved ensemble."""
    saved = d.models.saved
    videos = d.videos.sort_values("video").reset_index(drop=True)
    out = videos[META].copy()
    if MANIPULATION in videos:
        out["manipulation"] = videos[MANIPULATION].to_numpy()
    names, methods, parts = videos["video"].tolist(), saved.methods(), []
    for start in range(0, len(names), VIDEOS_PER_BATCH):
        batch = names[start:start + VIDEOS_PER_BATCH]
        frames = {b: read_frames(files[b], batch) for b in saved.backbones}
        parts.append(saved.predict_many(batch, frames, methods))
    return pd.concat([out, pd.concat(parts, ignore_index=True)], axis=1)


def write_predictions(d: Dataset, table: pd.DataFrame, files: dict[str, Path], out: Path) -> None:
    """``out/videos.parquet`` and ``out/transfer.json``, the folder replaced whole."""
    saved = d.models.saved
    meta = {"models": d.models.name, "dataset": d.name, "prior": saved.prior, "best_method": saved.best_method,
            "backbones": saved.backbones, "features": {b: str(p) for b, p in files.items()},
            "n_videos": len(table), "n_labelled": int(table["label"].notna().sum())}
    with atomic_dir(out) as tmp:
        table.to_parquet(tmp / "videos.parquet", index=False)
        write_json(tmp / META_FILE, meta)


def score_dataset(d: Dataset, config: dict, features_dir: Path, predictions_dir: Path,
                  executor: ExecutorSpec) -> pd.DataFrame:
    """The feature cache, then the predictions table written to ``predictions_dir``; returns the table."""
    files = extract_features(d, config, features_dir, executor)
    table = predict_videos(d, files)
    write_predictions(d, table, files, predictions_dir)
    return table
