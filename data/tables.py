"""Reading the dataset tables written by ``python -m data prepare`` (for the stages downstream), checked: a damaged
or foreign table is a one-line error naming the file and the first bad row, before any stage computes on it."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from common.errors import DataError
from common.schema import INTEGER, LABEL, TEXT, check_table, read_json_object, read_parquet

from .settings import SPLITS
from .splits import UNLABELED

HINT = "run 'make data' (python -m data prepare) first"
VIDEO_COLUMNS = {"video": TEXT, "label": LABEL, "family": TEXT, "split": TEXT, "fold": INTEGER,
                 "n_frames": INTEGER}
FRAME_COLUMNS = {"video": TEXT, "frame": INTEGER, "face": INTEGER, "path": TEXT}
# the videos table's leading columns, in order; folder, source_split and extra metadata columns follow
VIDEO_COLUMN_ORDER = ("video", "label", "original", "family", "split", "fold", "n_frames", "n_faces_max", "n_crops")


def in_column_order(videos: pd.DataFrame) -> pd.DataFrame:
    """``videos`` with the VIDEO_COLUMN_ORDER columns first, then its other columns in their order."""
    first = list(VIDEO_COLUMN_ORDER)
    return videos[first + [c for c in videos.columns if c not in first]]


def load_videos(interim: str | Path) -> pd.DataFrame:
    """``videos.parquet`` of ``data/interim/<NAME>``: one row per video (see ``data.prepare``), checked."""
    path = Path(interim) / "videos.parquet"
    videos = read_parquet(path, "videos table", HINT)
    check_table(path, videos, VIDEO_COLUMNS, key=["video"], what="videos table")
    split = videos["split"].to_numpy()
    bad = ~pd.Series(split).isin([*SPLITS, UNLABELED]).to_numpy()
    if bad.any():
        i = int(bad.nonzero()[0][0])
        raise DataError(f"{path}: row {i} (video {videos['video'].iloc[i]}): split {split[i]!r} is not one of "
                        f"{', '.join([*SPLITS, UNLABELED])}")
    negative = (videos["n_frames"] < 0).to_numpy()
    if negative.any():
        i = int(negative.nonzero()[0][0])
        raise DataError(f"{path}: row {i} (video {videos['video'].iloc[i]}): n_frames {videos['n_frames'].iloc[i]} "
                        "is negative")
    return videos


def load_tables(interim: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, Path]:
    """``videos``, ``frames`` and the dataset root from ``data/interim/<NAME>``; crop paths are relative to root.
    Every frame row must belong to a listed video and be unique by (video, frame, face)."""
    interim = Path(interim)
    videos = load_videos(interim)
    frames_path = interim / "frames.parquet"
    frames = read_parquet(frames_path, "frames table", HINT)
    check_table(frames_path, frames, FRAME_COLUMNS, key=["video", "frame", "face"], what="frames table")
    unknown = ~frames["video"].isin(videos["video"]).to_numpy()
    if unknown.any():
        i = int(unknown.nonzero()[0][0])
        raise DataError(f"{frames_path}: row {i}: video {frames['video'].iloc[i]!r} is not in videos.parquet")
    manifest_path = interim / "dataset.json"
    manifest = read_json_object(manifest_path, HINT)
    if not isinstance(manifest.get("root"), str) or not manifest["root"]:
        raise DataError(f"{manifest_path}: no dataset 'root' folder (a non-empty text)")
    return videos, frames, Path(manifest["root"])
