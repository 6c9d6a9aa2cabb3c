"""Kaggle-format prediction files (``filename,label`` = P(FAKE)) and label files, read defensively.

A predictions path may name its column: ``preds.tsv:score`` reads the ``score`` column of a file that is not
in Kaggle format. Comma or tab separation is detected from the header.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError
from .families import assign_families
from .metadata import VIDEO_SUFFIXES, merge_entries, read_metadata_csv, read_metadata_json, video_name
from .problems import Problems


@dataclass
class Predictions:
    path: str
    values: pd.Series          # P(FAKE) indexed by canonical video name, duplicates averaged
    duplicates: int            # rows dropped by averaging repeated names


def split_spec(spec: str) -> tuple[Path, str]:
    """``path[:column]`` -> (path, column); the default column is Kaggle's ``label``."""
    path, sep, column = spec.rpartition(":")
    if sep and path and Path(path).suffix and not Path(spec).exists():
        return Path(path), column
    return Path(spec), "label"


def _read_table(path: Path) -> pd.DataFrame:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    header = text.splitlines()[0] if text.strip() else ""
    delimiter = "\t" if header.count("\t") > header.count(",") else ","
    try:
        return pd.read_csv(io.StringIO(text), sep=delimiter, dtype=str, keep_default_na=False,
                           quoting=csv.QUOTE_MINIMAL)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise DataError(f"{path}: malformed CSV: {str(e).splitlines()[0]}") from None


def read_predictions(spec: str, problems: Problems) -> Predictions:
    """One predictions file: values in [0, 1], one per video (repeated names averaged, with a warning)."""
    path, column = split_spec(spec)
    table = _read_table(path)
    for needed in ("filename", column):
        if needed not in table.columns:
            raise DataError(f"{path}: no '{needed}' column (header: {','.join(table.columns)}); "
                            "name the prediction column as PATH:COLUMN")
    values = pd.to_numeric(table[column].str.strip(), errors="coerce")
    bad = values.isna() | (values < 0) | (values > 1)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{path}:{i + 2}: {column} {table[column].iloc[i]!r} is not a probability in [0, 1]")
    raw = table["filename"].str.strip()
    suffix = raw.str.extract(r"(\.[^./\\]+)$", expand=False).str.lower()
    not_video = suffix.notna() & ~suffix.isin(VIDEO_SUFFIXES)
    for name in raw[not_video]:
        problems.add(f"rows of {path} that name no video (dropped)", name)
    values, names = values[~not_video], raw[~not_video].map(video_name)
    grouped = values.groupby(names.to_numpy(), sort=True).mean()
    duplicates = len(values) - len(grouped)
    if duplicates:
        problems.add(f"repeated rows averaged in {path}", f"{duplicates} rows")
    return Predictions(str(path), grouped, duplicates)


@dataclass
class Labels:
    label: pd.Series     # 0/1 by video
    family: pd.Series    # family name by video


def read_labels(path: str | Path, problems: Problems) -> Labels:
    """A DFDC ``metadata.json`` or a CSV ``filename,label[,original]`` (label 0/1 or REAL/FAKE)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: labels file not found")
    entries = read_metadata_json(path) if path.suffix.lower() == ".json" else read_metadata_csv(path)
    merged = merge_entries(entries).entries
    labelled = {v: e for v, e in merged.items() if e.label is not None}
    if not labelled:
        raise DataError(f"{path}: no labelled video")
    family = assign_families(labelled, Problems())
    return Labels(pd.Series({v: e.label for v, e in labelled.items()}).sort_index(),
                  pd.Series(family).sort_index())
