"""Reading the ensemble stage's output, ``data/predictions/<NAME>/``: the predictions table and ``fit.json``,
checked before any report or submission is written from them."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from pandas.api import types

from common.errors import DataError, row_error
from common.schema import INTEGER, LABEL, PROBABILITY, TEXT, check_table, read_parquet
from ensemble.records import FIT_FILE, FitRecord

REQUIRED = {"video": TEXT, "split": TEXT, "label": LABEL, "family": TEXT}
HINT = "run 'make ensemble' (python -m ensemble fit) first"


def method_columns(table: pd.DataFrame) -> list[str]:
    """Method columns are named ``<a>/<b>`` (``smallcnn/max``, ``stack/lightgbm``)."""
    return [c for c in table.columns if "/" in c]


def load_predictions(folder: Path) -> tuple[pd.DataFrame, list[str], FitRecord | None]:
    """(the table, its method columns, ``fit.json`` or None). One row per video; every method value must be a
    probability: a NaN, an infinity or a value outside [0, 1] is a one-line error naming the file, the row and
    the video."""
    path = folder / "videos.parquet"
    table = read_parquet(path, "predictions table", HINT)
    methods = method_columns(table)
    if not methods:
        raise DataError(f"{path}: not a predictions table (no <a>/<b> method columns)")
    optional = {"n_frames": INTEGER} if "n_frames" in table else {}
    check_table(path, table, {**REQUIRED, **optional, **{m: PROBABILITY for m in methods}}, key=["video"],
                what="predictions table")
    pathlike = table["video"].str.contains(r"[/\\]|^\.\.?$", regex=True).to_numpy()
    if pathlike.any():
        raise row_error(path, pathlike, lambda i: "video", lambda i: f"{table['video'].iloc[i]!r} is not a plain "
                                                                    "file name")
    if "manipulation" in table and types.infer_dtype(table["manipulation"], skipna=True) not in ("string", "empty"):
        raise DataError(f"{path}: column 'manipulation' must hold text or nothing in every row")
    fit = FitRecord.read(folder / FIT_FILE) if (folder / FIT_FILE).exists() else None
    if fit is not None and fit.best_method not in methods:
        raise DataError(f"{folder / FIT_FILE}: best_method = {fit.best_method!r} is not a method column of "
                        f"{path.name}")
    return table, methods, fit
