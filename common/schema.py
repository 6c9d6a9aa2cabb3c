"""Checks of the tables one stage hands the next (Parquet files): required columns, their kinds, unique keys.

A table that fails is a one-line error naming the file, and the first bad row where there is one. The checks
are vectorised: they cost seconds on DFDC's 3.8 million crops, not minutes.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.api import types

from .errors import DataError, not_probabilities, row_error
from .paths import input_file

TEXT, INTEGER, LABEL, PROBABILITY = "text", "integer", "label", "probability"


def read_parquet(path: Path, what: str = "table", hint: str = "") -> pd.DataFrame:
    """A Parquet file as a DataFrame; a missing, unreadable or non-Parquet file is one line naming it."""
    import pyarrow as pa

    path = input_file(path, what, hint)
    try:
        return pd.read_parquet(path)
    except (OSError, pa.ArrowException, ValueError) as e:
        raise DataError(f"{path}: not a readable Parquet {what} ({str(e).splitlines()[0][:160]})") from None


def read_json_object(path: Path, hint: str = "") -> dict:
    """A JSON file holding an object; anything else is one line naming it."""
    path = input_file(path, "JSON file", hint)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError, OSError) as e:
        raise DataError(f"{path}: not readable JSON ({type(e).__name__}: {str(e)[:160]})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _bad_rows(series: pd.Series, kind: str) -> np.ndarray | None:
    """(n,) bool of the rows that are not of ``kind``; None when the column's type is wrong as a whole."""
    if kind == TEXT:
        inferred = types.infer_dtype(series, skipna=True)
        if inferred not in ("string", "empty"):
            return None
        return series.isna().to_numpy() | (series.astype("string").fillna("") == "").to_numpy()
    if kind == INTEGER:
        if types.is_integer_dtype(series):
            return series.isna().to_numpy()          # a nullable integer column may hold NA
        if types.is_float_dtype(series):
            values = series.to_numpy(np.float64)
            return ~np.isfinite(values) | (values != np.round(values))
        return None
    if kind == LABEL:
        if not (types.is_numeric_dtype(series) and not types.is_bool_dtype(series)) and series.notna().any():
            return None
        values = series.astype("float64").to_numpy()
        return ~np.isnan(values) & (values != 0) & (values != 1)
    if kind == PROBABILITY:
        if not types.is_numeric_dtype(series) or types.is_bool_dtype(series):
            return None
        return not_probabilities(series.astype("float64").to_numpy())
    raise ValueError(kind)


WHAT = {TEXT: "a non-empty text", INTEGER: "an integer", LABEL: "0 (REAL), 1 (FAKE) or empty",
        PROBABILITY: "a probability in [0, 1]"}


def _plain(value):
    """A NumPy scalar as the Python value it holds, so messages read ``7.0``, not ``np.float64(7.0)``."""
    return value.item() if hasattr(value, "item") else value


def check_table(path: Path, table: pd.DataFrame, columns: dict[str, str], key: list[str] | None = None,
                what: str = "table", first_row: int = 0) -> None:
    """Every column of ``columns`` ({name: kind}) is there and of its kind in every row, and ``key`` is unique.
    ``first_row``: the file row of the table's first row, when it is a part of its file."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataError(f"{path}: not a {what}: missing column(s) {', '.join(missing)}")

    def describe(i: int) -> str:
        return ", ".join(f"{k} {table[k].iloc[i]}" for k in key or [] if k in table.columns) or "index"

    for column, kind in columns.items():
        bad = _bad_rows(table[column], kind)
        if bad is None:
            raise DataError(f"{path}: column {column!r} holds {types.infer_dtype(table[column], skipna=True)} "
                            f"values, expected {WHAT[kind]} in every row")
        if bad.any():
            raise row_error(path, bad, describe, lambda i: f"{column} = {_plain(table[column].iloc[i])!r}, "
                                                           f"expected {WHAT[kind]}", first_row)
    if key:
        repeated = table.duplicated(key, keep="first").to_numpy()
        if repeated.any():
            raise row_error(path, repeated, describe, lambda i: f"repeats an earlier row's {'/'.join(key)}",
                            first_row)
