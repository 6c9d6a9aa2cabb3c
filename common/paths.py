"""Checks of paths given by users, before anything is read or written."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import DataError


def input_file(path: str | os.PathLike, what: str = "file") -> Path:
    """``path`` as a Path when it is an existing file; otherwise a one-line error naming it."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected a {what}")
    if not path.exists():
        raise DataError(f"{path}: {what} not found")
    return path


def output_file(path: str | os.PathLike) -> Path:
    """``path`` as a Path when a file may be written there (not an existing folder)."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected the name of a file to write")
    return path
