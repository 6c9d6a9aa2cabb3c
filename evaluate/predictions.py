"""Reading the ensemble stage's output, ``data/predictions/<NAME>/``: the predictions table and ``fit.json``,
checked before any report or submission is written from them."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from common.errors import DataError, not_probabilities, row_error

REQUIRED = ("video", "split", "label", "family")


def method_columns(table: pd.DataFrame) -> list[str]:
    """Method columns are named ``<a>/<b>`` (``smallcnn/max``, ``stack/lightgbm``)."""
    return [c for c in table.columns if "/" in c]


def load_predictions(folder: Path) -> tuple[pd.DataFrame, list[str], dict]:
    """(the table, its method columns, ``fit.json`` or {}). Every method value must be a probability: a NaN,
    an infinity or a value outside [0, 1] is a one-line error naming the file, the row and the video."""
    path = folder / "videos.parquet"
    if not path.is_file():
        raise DataError(f"{path}: not found; run 'make ensemble' (python -m ensemble fit) first")
    try:
        table = pd.read_parquet(path)
    except (OSError, pa.ArrowException) as e:
        raise DataError(f"{path}: not a readable Parquet file ({str(e).splitlines()[0][:160]})") from None
    methods = method_columns(table)
    missing = set(REQUIRED) - set(table.columns)
    if missing or not methods:
        raise DataError(f"{path}: not a predictions table (missing {', '.join(sorted(missing)) or 'method columns'})")
    _check_labels(path, table)
    for m in methods:
        _check_probabilities(path, table, m)
    return table, methods, _read_fit(folder / "fit.json")


def _check_labels(path: Path, table: pd.DataFrame) -> None:
    label = pd.to_numeric(table["label"], errors="coerce")
    bad = (label.notna() & ~label.isin([0, 1])) | (label.isna() & table["label"].notna())
    if bad.any():
        raise row_error(path, bad.to_numpy(), lambda i: f"video {table['video'].iloc[i]}",
                        lambda i: f"label {table['label'].iloc[i]!r} is not 0 (REAL), 1 (FAKE) or empty")


def _check_probabilities(path: Path, table: pd.DataFrame, method: str) -> None:
    try:
        values = table[method].to_numpy(np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        raise DataError(f"{path}: method column {method!r} is not numeric") from None
    bad = not_probabilities(values)
    if bad.any():
        raise row_error(path, bad, lambda i: f"video {table['video'].iloc[i]}",
                        lambda i: f"{method} = {values[i]!r} is not a probability in [0, 1]")


def _read_fit(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        fit = json.loads(path.read_text())
    except (ValueError, OSError) as e:
        raise DataError(f"{path}: not readable JSON ({e})") from None
    if not isinstance(fit, dict):
        raise DataError(f"{path}: expected a JSON object")
    return fit
