"""Atomic writes: write to a temporary name in the same folder, then rename."""
from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

_LIBC = ctypes.CDLL(None, use_errno=True) if os.name == "posix" else None
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publish(path: Path, mode: int) -> None:
    """Give a temporary file or folder the permissions a plain create would have (mkstemp uses 0600)."""
    os.chmod(path, mode & ~_umask())


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file path next to ``target``; rename it onto ``target`` on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{target.name}.", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        _publish(tmp, 0o666)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(target: str | os.PathLike, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(target: str | os.PathLike, obj) -> None:
    write_text(target, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


@contextmanager
def locked(target: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on ``target``'s name (a ``.<name>.lock`` file beside it, removed on release), so
    that writers of one name replace it in turn. A lock file unlinked by the previous holder is re-opened."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = target.parent / f".{target.name}.lock"
    while True:
        fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        yield
    finally:
        try:
            lock.unlink(missing_ok=True)
        finally:
            os.close(fd)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False where the
    system or file system cannot."""
    rename = getattr(_LIBC, "renameat2", None) if _LIBC is not None else None
    if rename is None:
        return False
    if rename(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary folder next to ``target``; on success it replaces ``target`` whole.

    Writers of one target swap in turn (:func:`locked`), so concurrent runs never collide, and the old folder is
    swapped out in one atomic exchange, so ``target`` is never missing, even to a reader. Where the file system
    cannot exchange (non-Linux), two renames under the lock leave it missing for that moment only."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}.", dir=target.parent))
    try:
        yield tmp
        _publish(tmp, 0o777)
        with locked(target):
            if not (target.exists() or target.is_symlink()):
                os.replace(tmp, target)
            elif not _exchange(tmp, target):
                # no atomic exchange here: two renames, under the lock
                old = Path(tempfile.mkdtemp(prefix=f".old-{target.name}.", dir=target.parent))
                os.replace(target, old / "old")
                os.replace(tmp, target)
                _remove(old)
    finally:
        if tmp.exists() or tmp.is_symlink():
            _remove(tmp)


@contextmanager
def staged_files(folder: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder that holds ``folder``'s files (hard links, or copies where the file system has
    none); on success, the files written or removed there are written or removed in ``folder``, each by one
    rename or unlink, and the others are left alone (files of other commands, even ones written meanwhile). On
    an error ``folder`` is left as it was, and not created. Writers in the stage must replace a file by rename
    (:func:`atomic_path`), never in place: a hard link shares its content with ``folder``'s file."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".tmp-{folder.name}.", dir=folder.parent))
    try:
        seeded = {}
        if folder.is_dir():
            for path in folder.iterdir():
                if path.is_file() and not path.is_symlink():
                    try:
                        os.link(path, stage / path.name)
                    except OSError:
                        shutil.copy2(path, stage / path.name)
                    seeded[path.name] = (stage / path.name).stat().st_ino
        yield stage
        folder.mkdir(exist_ok=True)
        for path in sorted(stage.iterdir()):
            if path.is_file() and seeded.get(path.name) != path.stat().st_ino:
                os.replace(path, folder / path.name)
        for name in seeded:
            if not (stage / name).exists():
                (folder / name).unlink(missing_ok=True)
    finally:
        _remove(stage)
