"""The feature cache, ``data/features/<NAME>/<backbone>.parquet``, written and read without TensorFlow.

One row per readable crop, sorted by (video, frame, face): ``video`` string, ``frame`` int32, ``face`` int16,
``score`` float32 (P(FAKE) of the frame) and ``embedding``, a fixed-size list of float32 (the backbone's pooled
features). The file's metadata holds the run key (what the rows depend on) and the embedding length.
This module imports only pyarrow, numpy and pandas: the ensemble and evaluation stages read the cache with it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from common.atomic import atomic_path
from common.errors import DataError, row_error
from common.schema import INTEGER, PROBABILITY, TEXT, check_table

META_KEY = b"deepfake_ensemble"
COLUMNS = ("video", "frame", "face", "score", "embedding")
EMBEDDING_LIMIT = 1e30     # pooled activations are far smaller; beyond this, float32 sums of a video overflow


def feature_table(video, frame, face, score, embedding: np.ndarray, key: str, dim: int) -> pa.Table:
    """Rows of the cache: (n,) video, frame, face and score, (n, dim) embeddings, tagged with the run key."""
    flat = pa.array(np.asarray(embedding).reshape(-1).astype(np.float32), pa.float32())
    table = pa.table({
        "video": pa.array(video, pa.string()), "frame": pa.array(frame, pa.int32()),
        "face": pa.array(face, pa.int16()), "score": pa.array(score, pa.float32()),
        "embedding": pa.FixedSizeListArray.from_arrays(flat, dim),
    })
    meta = {"key": key, "embedding_dim": dim}
    return table.replace_schema_metadata({META_KEY: json.dumps(meta).encode()})


def write_table(table: pa.Table, target: Path) -> None:
    with atomic_path(target) as tmp:
        pq.write_table(table, tmp)


def file_key(path: Path) -> str | None:
    """The run key a cache file (or chunk) was written with; None when it is unreadable or has none."""
    try:
        meta = pq.read_schema(path).metadata or {}
        return json.loads(meta.get(META_KEY, b"{}")).get("key")
    except (OSError, pa.ArrowInvalid, json.JSONDecodeError, AttributeError):
        return None


def load_features(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """A cache file as (``video, frame, face, score`` table (n rows), embeddings float32 (n, D)).

    Refuses, in one line naming the file and the first bad row, a file that is not a feature cache, a row
    repeated, a score that is NaN, infinite or outside [0, 1], and a NaN or infinite embedding."""
    path = Path(path)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise DataError(f"{path}: not a readable feature file ({str(e).splitlines()[0][:160]})") from None
    return check_features(path, table)


def check_features(path: Path, table: pa.Table) -> tuple[pd.DataFrame, np.ndarray]:
    """The checks of :func:`load_features` on a table in memory (``path`` names it in errors)."""
    missing = [c for c in COLUMNS if c not in table.column_names]
    emb = table.column("embedding").combine_chunks() if "embedding" in table.column_names else None
    if missing or not pa.types.is_fixed_size_list(emb.type):
        raise DataError(f"{path}: not a feature file (needs columns {', '.join(COLUMNS)}, embedding a "
                        f"fixed-size list{'; missing ' + ', '.join(missing) if missing else ''})")
    dim = emb.type.list_size
    flat = emb.values.to_numpy(zero_copy_only=False).reshape(-1, dim).astype(np.float32)
    frames = table.drop(["embedding"]).to_pandas()
    check_table(path, frames, {"video": TEXT, "frame": INTEGER, "face": INTEGER, "score": PROBABILITY},
                key=["video", "frame", "face"], what="feature file")
    bad = ~(np.isfinite(flat) & (np.abs(flat) <= EMBEDDING_LIMIT)).all(axis=1)
    if bad.any():
        raise row_error(path, bad, lambda i: f"video {frames['video'].iloc[i]}, frame {frames['frame'].iloc[i]}",
                        lambda i: f"embedding holds NaN, infinity or a value beyond ±{EMBEDDING_LIMIT:g}")
    if not pd.MultiIndex.from_frame(frames[["video", "frame", "face"]]).is_monotonic_increasing:
        order = frames.sort_values(["video", "frame", "face"]).index.to_numpy()     # the order the stages assume
        frames, flat = frames.iloc[order].reset_index(drop=True), flat[order]
    return frames, flat
