"""Safe extraction of face-part zips (e.g. ``deepfake-detection-faces-part-0.zip``)."""
from __future__ import annotations

import json
import re
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

from common.atomic import atomic_dir
from common.errors import DataError

_MARKER = ".extracted.json"


def _member_path(info: zipfile.ZipInfo) -> str:
    """The entry's relative path, with Windows separators made '/'."""
    return info.filename.replace("\\", "/").strip("/")


def check_members(path: Path, zf: zipfile.ZipFile) -> None:
    """Refuse absolute paths, drive letters, ``..`` components and symlinks (zip-slip), before writing anything:
    the one check of the entries' paths, so that every entry the extraction writes lands inside the target."""
    for info in zf.infolist():
        name = info.filename.replace("\\", "/")
        parts = PurePosixPath(name).parts
        if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
            raise DataError(f"{path}: entry {info.filename!r} has an absolute path; refusing to extract")
        if ".." in parts:
            raise DataError(f"{path}: entry {info.filename!r} points outside the target folder ('..'); "
                            "refusing to extract")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise DataError(f"{path}: entry {info.filename!r} is a symbolic link; refusing to extract")


def extract_zip(path: str | Path, target: str | Path) -> Path:
    """Extract ``path`` into ``target`` atomically (a temporary folder renamed into place).

    An extraction already done from the same zip (same size and modification time) is reused.
    """
    path, target = Path(path), Path(target)
    st = path.stat()
    stamp = {"zip": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    marker = target / _MARKER
    if marker.exists():
        try:
            if json.loads(marker.read_text()) == stamp:
                return target
        except (OSError, json.JSONDecodeError):
            pass
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise DataError(f"{path}: not a valid zip file") from None
    with zf:
        check_members(path, zf)
        with atomic_dir(target) as tmp:
            for info in zf.infolist():
                dest = tmp / _member_path(info)
                try:
                    if info.is_dir() or info.filename.endswith("\\"):
                        dest.mkdir(parents=True, exist_ok=True)
                        continue
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(dest, "wb") as out:
                        shutil.copyfileobj(src, out)
                except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError) as e:
                    # RuntimeError: encrypted entry; NotImplementedError: unsupported compression method
                    raise DataError(f"{path}: entry {info.filename!r} cannot be extracted: {e}") from None
            (tmp / _MARKER).write_text(json.dumps(stamp))
    return target
