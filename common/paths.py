"""Checks of paths given by users, before anything is read or written."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import DataError


def input_file(path: str | os.PathLike, what: str = "file", hint: str = "") -> Path:
    """``path`` as a Path when it is an existing file; otherwise a one-line error naming it (and ``hint``, the
    command that makes it, when it is missing)."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected a {what}")
    if not path.exists():
        raise DataError(f"{path}: {what} not found{'; ' + hint if hint else ''}")
    return path


def output_file(path: str | os.PathLike) -> Path:
    """``path`` as a Path when a file may be written there (not an existing folder)."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected the name of a file to write")
    return path
