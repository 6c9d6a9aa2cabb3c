"""Reading the dataset tables written by ``python -m data prepare`` (for the stages downstream)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from common.errors import DataError


def load_tables(interim: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, Path]:
    """``videos``, ``frames`` and the dataset root from ``data/interim/<NAME>``; crop paths are relative to root."""
    interim = Path(interim)
    needed = [interim / n for n in ("videos.parquet", "frames.parquet", "dataset.json")]
    for path in needed:
        if not path.exists():
            raise DataError(f"{path}: not found; run 'make data' (python -m data prepare) first")
    manifest = json.loads(needed[2].read_text())
    return pd.read_parquet(needed[0]), pd.read_parquet(needed[1]), Path(manifest["root"])
