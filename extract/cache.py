"""The feature cache, ``data/features/<NAME>/<backbone>.parquet``, written and read without TensorFlow.

One row per readable crop, sorted by (video, frame, face): ``video`` string, ``frame`` int32, ``face`` int16,
``score`` float32 (P(FAKE) of the frame) and ``embedding``, a fixed-size list of float32, or float16 to halve the
cache (the backbone's pooled features). The file's metadata holds the run key (what the rows depend on) and the
embedding length. Files are written in row groups of at most ``ROW_GROUP_ROWS`` rows, so that a reader can take
them a few whole videos at a time (:class:`FeatureFile`) instead of all at once (:func:`load_features`).
This module imports only pyarrow, numpy and pandas: the ensemble and evaluation stages read the cache with it.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
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
EMBEDDING_DTYPES = {"float32": pa.float32(), "float16": pa.float16()}
ROW_GROUP_ROWS = 8192      # rows per Parquet row group: the smallest part a reader can take (40 MiB at 1280-d)
# Only the video names repeat: dictionary-encoding the embeddings' random floats overflows the dictionary and falls
# back to plain after the work is done (writing 37k crops at 1280-d: 10.7 s with every column, 3.2 s with this)
WRITE_OPTIONS = {"use_dictionary": ["video"]}


def feature_table(video, frame, face, score, embedding: np.ndarray, key: str, dim: int,
                  dtype: str = "float32") -> pa.Table:
    """Rows of the cache: (n,) video, frame, face and score, (n, dim) embeddings stored as ``dtype`` (float32
    or float16), tagged with the run key."""
    values = np.asarray(embedding).reshape(-1)
    if dtype == "float16" and len(values) and np.abs(values).max() > np.finfo(np.float16).max:
        raise DataError(f"embedding values up to {np.abs(values).max():.3g} do not fit float16 (±65504); "
                        "set [extract] embedding_dtype = \"float32\"")
    flat = pa.array(values.astype(dtype), EMBEDDING_DTYPES[dtype])
    table = pa.table({
        "video": pa.array(video, pa.string()), "frame": pa.array(frame, pa.int32()),
        "face": pa.array(face, pa.int16()), "score": pa.array(score, pa.float32()),
        "embedding": pa.FixedSizeListArray.from_arrays(flat, dim),
    })
    meta = {"key": key, "embedding_dim": dim}
    return table.replace_schema_metadata({META_KEY: json.dumps(meta).encode()})


MANIFEST_FILE = "manifest.json"
MAX_CHUNKS = 10_000_000


@dataclass(frozen=True)
class ChunkManifest:
    """``<backbone>.chunks/manifest.json``: the run key every chunk of the folder is written with and how many
    chunks make the whole file, written before the first chunk; the folder is merged (and removed) when complete."""

    key: str
    chunks: int                   # in [1, MAX_CHUNKS]
    backbone: str

    def to_json(self) -> dict:
        return {"key": self.key, "chunks": self.chunks, "backbone": self.backbone}

    @classmethod
    def from_json(cls, obj, path: Path) -> ChunkManifest:
        """The checked manifest; anything else is one line naming the file and the entry."""
        if not isinstance(obj, dict):
            raise DataError(f"{path}: not a chunk manifest (a JSON object), got {type(obj).__name__}")
        chunks = obj.get("chunks")
        for name, ok, expected in (("key", isinstance(obj.get("key"), str) and obj.get("key"), "a non-empty text"),
                                   ("chunks", isinstance(chunks, int) and not isinstance(chunks, bool)
                                    and 1 <= chunks <= MAX_CHUNKS, f"an integer in [1, {MAX_CHUNKS}]"),
                                   ("backbone", isinstance(obj.get("backbone"), str) and obj.get("backbone"),
                                    "a non-empty text")):
            if not ok:
                raise DataError(f"{path}: not a chunk manifest: {name} = {obj.get(name)!r}, expected {expected}")
        return cls(obj["key"], chunks, obj["backbone"])

    @classmethod
    def read(cls, path: Path) -> ChunkManifest:
        try:
            obj = json.loads(Path(path).read_text())
        except (ValueError, OSError, RecursionError) as e:
            raise DataError(f"{path}: not a readable chunk manifest ({type(e).__name__}: {str(e)[:160]})") from None
        return cls.from_json(obj, path)

    def write(self, path: Path) -> None:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_json()))


def write_table(table: pa.Table, target: Path) -> None:
    with atomic_path(target) as tmp:
        pq.write_table(table, tmp, row_group_size=ROW_GROUP_ROWS, **WRITE_OPTIONS)


def write_tables(tables: Iterable[pa.Table], target: Path) -> int:
    """Tables of one schema written one after another into ``target`` (atomically), holding one at a time;
    returns the rows written."""
    rows, writer = 0, None
    with atomic_path(target) as tmp:
        try:
            for table in tables:
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema, **WRITE_OPTIONS)
                writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
                rows += table.num_rows
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            raise DataError(f"{target}: no table to write")
    return rows


def file_key(path: Path) -> str | None:
    """The run key a cache file (or chunk) was written with; None when it is unreadable or has none."""
    try:
        meta = pq.read_schema(path).metadata or {}
        return json.loads(meta.get(META_KEY, b"{}")).get("key")
    except (OSError, pa.ArrowInvalid, json.JSONDecodeError, AttributeError):
        return None


def _unreadable(path: Path, e: Exception) -> DataError:
    return DataError(f"{path}: not a readable feature file ({str(e).splitlines()[0][:160]})")


def load_features(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """A whole cache file in memory as (``video, frame, face, score`` table (n rows), embeddings float32 (n, D)),
    sorted by (video, frame, face) whatever the file's order. For files too big for memory, see FeatureFile.

    Refuses, in one line naming the file and the first bad row, a file that is not a feature cache, a row
    repeated, a score that is NaN, infinite or outside [0, 1], and a NaN or infinite embedding."""
    path = Path(path)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise _unreadable(path, e) from None
    return check_features(path, table)


def check_features(path: Path, table: pa.Table, first_row: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """The checks of :func:`load_features` on a table in memory (``path`` names it in errors; ``first_row`` is
    the file row of the table's first row when it is a part of the file)."""
    frames, flat, _ = _checked(path, table, first_row)
    return frames, flat


def _embedding_dim(path: Path, schema: pa.Schema) -> int:
    """The embedding length of a feature file's schema; refuses any other schema."""
    repeated = [c for c in COLUMNS if len(schema.get_all_field_indices(c)) > 1]
    if repeated:
        raise DataError(f"{path}: not a feature file: column {repeated[0]!r} appears more than once")
    missing = [c for c in COLUMNS if c not in schema.names]
    kind = schema.field("embedding").type if "embedding" in schema.names else None
    if missing or not pa.types.is_fixed_size_list(kind) or kind.value_type not in EMBEDDING_DTYPES.values():
        found = f"; missing {', '.join(missing)}" if missing else f"; embedding is {kind}"
        raise DataError(f"{path}: not a feature file (needs columns {', '.join(COLUMNS)}, embedding a "
                        f"fixed-size list of float32 or float16{found})")
    return kind.list_size


def _checked(path: Path, table: pa.Table, first_row: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray | None]:
    """Checked (frames, embeddings float32 (n, D), the sorting order applied or None when already sorted)."""
    dim = _embedding_dim(path, table.schema)
    values = table.column("embedding").combine_chunks().values
    flat = values.to_numpy(zero_copy_only=False).reshape(-1, dim).astype(np.float32, copy=False)
    try:
        frames = table.drop(["embedding"]).to_pandas()
    except (pa.ArrowException, UnicodeDecodeError) as e:       # e.g. a video name that is not UTF-8
        raise _unreadable(path, e) from None
    check_table(path, frames, {"video": TEXT, "frame": INTEGER, "face": INTEGER, "score": PROBABILITY},
                key=["video", "frame", "face"], what="feature file", first_row=first_row)
    bad = ~(np.isfinite(flat) & (np.abs(flat) <= EMBEDDING_LIMIT)).all(axis=1)
    if bad.any():
        raise row_error(path, bad, lambda i: f"video {frames['video'].iloc[i]}, frame {frames['frame'].iloc[i]}",
                        lambda i: f"embedding holds NaN, infinity or a value beyond ±{EMBEDDING_LIMIT:g}", first_row)
    if pd.MultiIndex.from_frame(frames[["video", "frame", "face"]]).is_monotonic_increasing:
        return frames, flat, None
    order = frames.sort_values(["video", "frame", "face"]).index.to_numpy()     # the order the stages assume
    return frames.iloc[order].reset_index(drop=True), flat[order], order


# --- reading a big file a few whole videos at a time ----------------------------------------------------

@dataclass(frozen=True)
class Part:
    """Row groups of a feature file that hold whole videos: no video of them is in any other part."""

    path: str                     # as the user gave it, for errors
    absolute: str                 # what a worker opens (its working folder may differ)
    row_groups: tuple[int, ...]
    first_row: int                # the file row of the part's first row
    rows: int


@dataclass
class PartRows:
    """A part read and checked: rows sorted by (video, frame, face)."""

    frames: pd.DataFrame          # video, frame, face, score (n rows)
    embeddings: np.ndarray        # (n, D) float32
    file_rows: np.ndarray         # (n,) the file row of each row, for errors


class FeatureFile:
    """A feature file opened for reading in parts (:meth:`parts`, :func:`read_part`); only its footer is read
    here. Parts are cut between row groups where the ``video`` statistics show that every video before the cut
    sorts before every video after it, so a video is never split; a file not sorted by video reads as fewer,
    bigger parts (one, at worst)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self._file = pq.ParquetFile(self.path)
        except (OSError, pa.ArrowException) as e:
            raise _unreadable(self.path, e) from None
        self.dim = _embedding_dim(self.path, self._file.schema_arrow)
        self.rows = self._file.metadata.num_rows

    def _video_ranges(self) -> list[tuple[str, str, int]] | None:
        """(min video, max video, rows) of every row group; None when a row group has no statistics."""
        meta = self._file.metadata
        leaves = [i for i in range(meta.num_columns) if meta.schema.column(i).path == "video"]
        if len(leaves) != 1:
            return None
        ranges = []
        for i in range(meta.num_row_groups):
            group = meta.row_group(i)
            stats = group.column(leaves[0]).statistics
            if group.num_rows and (stats is None or not stats.has_min_max):
                return None
            try:
                ranges.append((stats.min, stats.max, group.num_rows) if group.num_rows else (None, None, 0))
            except UnicodeDecodeError:           # not UTF-8: read as one part, whose reader names the problem
                return None
        return ranges

    def parts(self, target_rows: int) -> list[Part]:
        """Consecutive row groups packed into parts of about ``target_rows`` rows (more where a clean cut is
        further away); empty row groups are left out."""
        ranges = self._video_ranges()
        n_groups = self._file.metadata.num_row_groups
        if ranges is None:
            return [self._part(tuple(range(n_groups)), 0, self.rows)] if self.rows else []
        filled = [i for i, r in enumerate(ranges) if r[2]]
        # a cut before filled[k] is clean when max(video before) < min(video from there on)
        suffix_min = [None] * (len(filled) + 1)
        for k in range(len(filled) - 1, -1, -1):
            low = ranges[filled[k]][0]
            suffix_min[k] = low if suffix_min[k + 1] is None else min(low, suffix_min[k + 1])
        parts, current, rows, prefix_max, offsets = [], [], 0, None, np.cumsum([0] + [r[2] for r in ranges])
        for k, i in enumerate(filled):
            if current and rows >= target_rows and suffix_min[k] > prefix_max:
                parts.append(self._part(tuple(current), int(offsets[current[0]]), rows))
                current, rows = [], 0
            current.append(i)
            rows += ranges[i][2]
            prefix_max = ranges[i][1] if prefix_max is None else max(prefix_max, ranges[i][1])
        if current:
            parts.append(self._part(tuple(current), int(offsets[current[0]]), rows))
        return parts

    def _part(self, row_groups: tuple[int, ...], first_row: int, rows: int) -> Part:
        return Part(str(self.path), str(self.path.resolve()), row_groups, first_row, rows)


def read_part(part: Part) -> PartRows:
    """A part of a feature file, checked as :func:`load_features` checks a whole file; errors name file rows."""
    path = Path(part.path)
    try:
        table = pq.ParquetFile(part.absolute).read_row_groups(list(part.row_groups))
    except (OSError, pa.ArrowException) as e:
        raise _unreadable(path, e) from None
    frames, flat, order = _checked(path, table, part.first_row)
    rows = part.first_row + (np.arange(len(frames)) if order is None else order)
    return PartRows(frames, flat, rows)
