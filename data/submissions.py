"""Kaggle-format prediction files (``filename,label`` = P(FAKE)) and label files, read defensively.

A predictions path may name its column: ``preds.tsv:score`` reads the ``score`` column of a file that is not
in Kaggle format. Comma or tab separation is detected from the header.
"""
from __future__ import annotations

import csv
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from common.errors import DataError
from common.paths import input_file
from common.problems import Problems

from .families import assign_families
from .metadata import VIDEO_SUFFIXES, merge_entries, read_metadata_csv, read_metadata_json, video_name


@dataclass
class Predictions:
    path: str
    values: pd.Series          # P(FAKE) indexed by canonical video name, duplicates averaged
    duplicates: int            # rows dropped by averaging repeated names
    repeated: list[str]        # the names that were repeated
    filenames: pd.Series       # the video rows' filenames as written, in file order (index: row in the file)


def split_spec(spec: str) -> tuple[Path, str]:
    """``path[:column]`` -> (path, column); the default column is Kaggle's ``label``."""
    path, sep, column = spec.rpartition(":")
    if sep and path and Path(path).suffix and not Path(spec).exists():
        return Path(path), column
    return Path(spec), "label"


def read_table(path: Path) -> pd.DataFrame:
    """A comma- or tab-separated file as strings; the index is the row's position in the file (header = -1)."""
    try:
        text = input_file(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    header = text.splitlines()[0] if text.strip() else ""
    delimiter = "\t" if header.count("\t") > header.count(",") else ","
    names = [c.strip() for c in next(csv.reader([header], delimiter=delimiter), [])]
    repeated = sorted({c for c in names if names.count(c) > 1})
    if repeated:
        raise DataError(f"{path}: column {repeated[0]!r} appears more than once in the header")
    try:
        with warnings.catch_warnings():
            # a row with more fields than the header (e.g. a trailing comma) is an error, not a pandas warning
            warnings.simplefilter("error", pd.errors.ParserWarning)
            table = pd.read_csv(io.StringIO(text), sep=delimiter, dtype=str, keep_default_na=False, index_col=False,
                                quoting=csv.QUOTE_MINIMAL, skip_blank_lines=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, pd.errors.ParserWarning) as e:
        raise DataError(f"{path}: malformed CSV: {str(e).splitlines()[0]}") from None
    # blank lines are dropped, but the index keeps each row's place: line number = index + 2
    return table[~(table == "").all(axis=1)]


def listing(names, limit: int = 5) -> str:
    """``a, b, c (+N more)``: a few names of a longer list, for one-line errors and warnings."""
    names = [str(n) for n in names]
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def read_predictions(spec: str, problems: Problems, dedupe: str = "mean",
                     header: list[str] | None = None, column: str | None = None) -> Predictions:
    """One predictions file: values in [0, 1], one per video.

    ``dedupe``: "mean" averages repeated names (with a warning), "error" refuses them. ``header``: the exact
    columns required (Kaggle's ``["filename", "label"]``), or None for any header holding the two needed.
    ``column``: the prediction column (default: from ``spec`` as ``PATH:COLUMN``, else ``label``).
    Rows whose filename has a non-video suffix (e.g. ``metadata.json``) are dropped with a warning.
    """
    path, column = (Path(spec), column) if column else split_spec(spec)
    table = read_table(path)
    if header is not None and list(table.columns) != header:
        raise DataError(f"{path}: header is '{','.join(table.columns)}', expected '{','.join(header)}'")
    for needed in ("filename", column):
        if needed not in table.columns:
            raise DataError(f"{path}: no '{needed}' column (header: {','.join(table.columns)}); "
                            "name the prediction column as PATH:COLUMN")
    raw = table["filename"].str.strip()
    suffix = raw.str.extract(r"(\.[^./\\]+)$", expand=False).str.lower()
    not_video = (suffix.notna() & ~suffix.isin(VIDEO_SUFFIXES)).to_numpy()
    for name in raw[not_video]:
        problems.add(f"rows of {path} that name no video (dropped)", name)
    line = pd.Series(table.index.to_numpy() + 2)[~not_video]        # file line numbers (header = line 1)
    text, names = table[column].str.strip()[~not_video], raw[~not_video].map(video_name)
    values = pd.to_numeric(text, errors="coerce")
    empty = text.str.lower().isin(["", "nan", "na", "null", "none"]).to_numpy()
    for bad, what in ((empty, f"NaN or empty {column}"),
                      (values.isna().to_numpy() & ~empty, f"non-numeric {column}"),
                      (((values < 0) | (values > 1)).to_numpy(), f"{column} outside [0, 1]")):
        if bad.any():
            where = [f"{n} (line {i}: {v!r})" for n, i, v in zip(names[bad], line[bad], text[bad])]
            raise DataError(f"{path}: {int(bad.sum())} rows with {what}: {listing(where, 3)}")
    grouped = values.groupby(names.to_numpy(), sort=True).mean()
    duplicates = len(values) - len(grouped)
    if duplicates:
        repeated = names[names.duplicated(keep=False)].unique()
        if dedupe != "mean":
            raise DataError(f"{path}: {repeated_message(sorted(repeated), duplicates)}")
        problems.add(f"repeated rows averaged in {path}", f"{duplicates} rows of {len(repeated)} videos")
    else:
        repeated = []
    return Predictions(str(path), grouped, duplicates, sorted(repeated), raw[~not_video])


def repeated_message(repeated: list[str], extra_rows: int) -> str:
    return f"{len(repeated)} videos listed more than once ({extra_rows} extra rows): {listing(repeated)}"


def name_problems(pred: Predictions, expected: pd.Index | list[str], against: str) -> list[str]:
    """What keeps a predictions file's videos from being exactly ``expected`` (names from ``against``)."""
    have, want = set(pred.values.index), set(expected)
    missing, extra = sorted(want - have), sorted(have - want)
    return ([f"{len(missing)} videos of {against} missing: {listing(missing)}"] if missing else []) + \
           ([f"{len(extra)} videos not in {against}: {listing(extra)}"] if extra else [])


def check_names(pred: Predictions, expected: pd.Index | list[str], against: str) -> None:
    """Refuse a predictions file whose videos are not exactly ``expected``, naming them."""
    problems = name_problems(pred, expected, against)
    if problems:
        raise DataError(f"{pred.path}: " + "; ".join(problems))


@dataclass
class Labels:
    label: pd.Series     # 0/1 by video
    family: pd.Series    # family name by video
    unlabelled: dict[str, str] = field(default_factory=dict)   # {video: where it is listed} of empty label cells


def read_labels(path: str | Path, problems: Problems) -> Labels:
    """A DFDC ``metadata.json`` or a CSV ``filename,label[,original]`` (label 0/1 or REAL/FAKE)."""
    path = input_file(path, "labels file")
    entries = read_metadata_json(path) if path.suffix.lower() == ".json" else read_metadata_csv(path)
    merged = merge_entries(entries).entries
    labelled = {v: e for v, e in merged.items() if e.label is not None}
    if not labelled:
        raise DataError(f"{path}: no labelled video")
    family = assign_families(labelled, Problems())
    return Labels(pd.Series({v: e.label for v, e in labelled.items()}).sort_index(),
                  pd.Series(family).sort_index(),
                  {v: e.source for v, e in merged.items() if e.label is None})
