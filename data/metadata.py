"""DFDC metadata: ``metadata.csv`` (faces parts) and ``metadata.json`` (raw parts), merged and checked."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from common.errors import DataError

REQUIRED_COLUMNS = ("filename", "label")
KNOWN_COLUMNS = ("filename", "split", "original", "label")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
_LABELS = {"FAKE": 1, "1": 1, "1.0": 1, "TRUE": 1, "REAL": 0, "0": 0, "0.0": 0, "FALSE": 0}
_MISSING = {"", "NAN", "NONE", "NULL"}
BOM = "\ufeff"


def video_name(name: str) -> str:
    """Canonical video key: ``abcdefghij.mp4`` from ``abcdefghij`` or ``abcdefghij.mp4``."""
    name = name.strip().replace("\\", "/").rsplit("/", 1)[-1]
    return name if name.lower().endswith(VIDEO_SUFFIXES) else f"{name}.mp4"


def video_stem(video: str) -> str:
    """The face-folder name of a video: its key without the extension."""
    return video.rsplit(".", 1)[0] if video.lower().endswith(VIDEO_SUFFIXES) else video


def parse_label(value, where: str) -> int | None:
    """1 for FAKE, 0 for REAL, None when unknown. Accepts REAL/FAKE (any case) and 0/1."""
    if value is None or isinstance(value, float) and value != value:
        return None
    text = str(value).strip().upper()
    if text in _MISSING:
        return None
    if text not in _LABELS:
        raise DataError(f"{where}: label {value!r} is not REAL or FAKE (or 0/1)")
    return _LABELS[text]


def _optional(value) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return None if text.upper() in _MISSING else text


@dataclass(frozen=True)
class Entry:
    """One listed video. ``source`` says where it was read, e.g. ``part0/metadata.csv:12``."""

    video: str
    label: int | None
    original: str | None
    split: str | None
    source: str
    extra: dict = field(default_factory=dict, compare=False)

    def agrees_with(self, other: "Entry") -> bool:
        """Same label, original and split, and the same value in every extra column both rows have."""
        shared = self.extra.keys() & other.extra.keys()
        return ((self.label, self.original, self.split) == (other.label, other.original, other.split)
                and all(self.extra[k] == other.extra[k] for k in shared))


# Columns that `prepare` computes; a metadata column of the same name is kept as ``meta_<name>``.
COMPUTED_COLUMNS = ("video", "family", "fold", "n_frames", "n_faces_max", "n_crops", "folder", "source_split")


def _extra_name(column: str) -> str | None:
    """The table column for an extra metadata column; None for a nameless index column (pandas' ``Unnamed: 0``)."""
    if column == "" or column.startswith("unnamed:"):
        return None
    return f"meta_{column}" if column in COMPUTED_COLUMNS or column.startswith("meta_") else column


def _plain_name(value: str | None, column: str, where: str) -> str | None:
    """A metadata file name must be a plain name: no folder part, not '.' or '..' (it names a face folder)."""
    if value is None:
        return None
    if "/" in value or "\\" in value or value.strip(".") == "":
        raise DataError(f"{where}: {column} {value!r} is not a plain file name (no folders, not '.' or '..')")
    if not value.isprintable() or _unencodable(value):        # NUL, newlines, lone surrogates
        raise DataError(f"{where}: {column} {value!r} is not a printable UTF-8 file name")
    return value


def _unencodable(text: str) -> bool:
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:      # e.g. a lone surrogate from a JSON escape
        return True


def _entry(raw: dict, where: str) -> Entry:
    name = _plain_name(_optional(raw.get("filename")), "filename", where)
    if name is None:
        raise DataError(f"{where}: empty filename")
    original = _plain_name(_optional(raw.get("original")), "original", where)
    extra = {_extra_name(k): _optional(v) for k, v in raw.items() if k not in KNOWN_COLUMNS}
    extra.pop(None, None)
    return Entry(video=video_name(name), label=parse_label(raw.get("label"), where),
                 original=video_name(original) if original else None,
                 split=_optional(raw.get("split")), source=where, extra=extra)


def _header(row: list[str]) -> list[str] | None:
    # a byte-order mark inside the file is what `cat` leaves of a second file's own BOM
    names = [c.replace(BOM, "").strip().lower() for c in row]
    return names if all(c in names for c in REQUIRED_COLUMNS) else None


def read_metadata_csv(path: str | Path) -> list[Entry]:
    """Rows of a ``metadata.csv``. Header rows repeated inside (left by ``cat``) are dropped, and each one
    re-sets the column order for the rows that follow, so parts with different column orders merge."""
    path = Path(path)
    entries: list[Entry] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            columns: list[str] | None = None
            for row in reader:
                where = f"{path}:{reader.line_num}"
                if not any(c.strip() for c in row):
                    continue
                header = _header(row)
                if header is not None:
                    if len(set(header)) != len(header):
                        raise DataError(f"{where}: repeated column name in header {row}")
                    columns = header
                    continue
                if columns is None:
                    raise DataError(f"{where}: no header with columns {','.join(KNOWN_COLUMNS)} before this row")
                if len(row) != len(columns):
                    raise DataError(f"{where}: expected {len(columns)} fields ({','.join(columns)}), got {len(row)}")
                entries.append(_entry(dict(zip(columns, row)), where))
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except csv.Error as e:
        raise DataError(f"{path}: malformed CSV: {e}") from None
    if columns is None:
        raise DataError(f"{path}: no header with columns {','.join(KNOWN_COLUMNS)}")
    return entries


def read_metadata_json(path: str | Path) -> list[Entry]:
    """Entries of a DFDC ``metadata.json``: ``{"x.mp4": {"label": "FAKE", "split": "train", "original": "y.mp4"}}``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"), object_pairs_hook=_Pairs)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deeply to be DFDC metadata") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if not isinstance(data, _Pairs):
        raise DataError(f"{path}: expected a JSON object keyed by video filename, got {type(data).__name__}")
    entries = []
    for name, value in data:   # pairs, so a repeated key is seen as a duplicate row
        where = f"{path}: entry {name!r}"
        if isinstance(value, _Pairs):
            value = dict(value)
        if not isinstance(value, dict):
            raise DataError(f"{where}: expected an object with label/split/original, got {type(value).__name__}")
        if "label" not in value:
            raise DataError(f"{where}: no 'label'")
        entries.append(_entry({**value, "filename": name}, where))
    return entries


class _Pairs(list):
    """A JSON object as its (key, value) pairs, keeping repeated keys."""


def read_metadata(path: str | Path) -> list[Entry]:
    path = Path(path)
    if path.suffix.lower() == ".json":
        return read_metadata_json(path)
    return read_metadata_csv(path)


@dataclass
class Merged:
    """Merged metadata: one entry per video, in first-seen order, and how many identical duplicates were dropped."""

    entries: dict[str, Entry]
    duplicates_dropped: int


def merge_entries(entries: list[Entry]) -> Merged:
    """One entry per video. An identical repeat is dropped; a conflicting one is an error naming both rows."""
    merged: dict[str, Entry] = {}
    dropped = 0
    for entry in entries:
        seen = merged.get(entry.video)
        if seen is None:
            merged[entry.video] = entry
            continue
        if not seen.agrees_with(entry):
            raise DataError(f"{seen.source} and {entry.source} disagree on {entry.video}: "
                            f"{_describe(seen)} vs {_describe(entry)}")
        dropped += 1
    return Merged(merged, dropped)


def _describe(e: Entry) -> str:
    label = {1: "FAKE", 0: "REAL", None: "unlabelled"}[e.label]
    parts = [label, f"original={e.original or '-'}", f"split={e.split or '-'}"]
    parts += [f"{k}={v or '-'}" for k, v in sorted(e.extra.items())]
    return " ".join(parts)
