"""Shared helpers: tiny face-layout datasets written the way other programs write them."""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED_DFDC = Path(os.environ.get("DFE_SHARED_DFDC", REPO.parent / "shared" / "dfdc"))


def write_png(path: Path, seed: int = 0, size: int = 8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def tree_digest(folder: Path) -> str:
    """A hash of every file's relative path and bytes under ``folder``."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def write_video(root: Path, stem: str, frames, extra_faces=()) -> Path:
    """A face folder: ``<frame>.png`` for each frame, ``<frame>_2.png`` for frames in ``extra_faces``."""
    folder = root / stem
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        write_png(folder / f"{frame}.png", seed=hash((stem, frame)) % 2**32)
        if frame in extra_faces:
            write_png(folder / f"{frame}_2.png", seed=i + 1)
    return folder


# Commands that run a TensorFlow model get a process of their own, as a user's run would: TensorFlow's runtime
# (threads, seeds, op determinism, precision policy) is set once per process.
TENSORFLOW_COMMANDS = {("extract",), ("data", "faces"), ("bench", "faces"), ("bench", "extract"),
                       ("evaluate", "predict"), ("evaluate", "transfer")}


def run_cli(*args: str, cwd: Path = REPO, subprocess_run: bool | None = None) -> subprocess.CompletedProcess:
    """``python -m <args>`` as a user would run it, from ``cwd``: stdout, stderr and the exit code.

    Commands without TensorFlow run in this process (``<stage>.__main__``'s parser through the same
    ``common.cli.run`` entry point), which saves a Python start-up per call; an uncaught exception comes
    back as its traceback on stderr with exit code 1, as ``python -m`` would print it."""
    if subprocess_run is None:
        subprocess_run = args[:1] in TENSORFLOW_COMMANDS or args[:2] in TENSORFLOW_COMMANDS
    if subprocess_run:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, env=env)
    from common.cli import run

    parser = importlib.import_module(f"{args[0]}.__main__").build_parser()
    out, err = io.StringIO(), io.StringIO()
    previous = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = run(parser, list(args[1:]))
            except SystemExit as e:       # argparse: --help, usage errors
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except Exception:             # noqa: BLE001  (what `python -m` would print)
                traceback.print_exc()
                code = 1
    finally:
        os.chdir(previous)
    return subprocess.CompletedProcess(["python", "-m", *args], code, out.getvalue(), err.getvalue())


@pytest.fixture
def config():
    from common.config import load_config
    return load_config()


def bad_config_message(tmp_path: Path, text: str, *loaders) -> str:
    """Write ``text`` as a user config, load it and pass it to each of ``loaders`` (stage settings readers);
    the ``DataError`` message, checked to be one line naming the config file."""
    from common.config import load_config
    from common.errors import DataError

    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(DataError) as err:
        config = load_config(path)
        for load in loaders:
            load(config)
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    return message


def shared_file(name: str) -> Path:
    path = SHARED_DFDC / name
    if not path.exists():
        pytest.skip(f"real DFDC file {path} not present (../shared/dfdc is only on project machines)")
    return path


def kill_when_chunks(cmd: list[str], chunks: Path, count: int = 2, timeout: float = 120) -> tuple[list[Path], int]:
    """Run ``python -m ...`` ``cmd`` and SIGKILL it once ``count`` chunk files are in ``chunks``; returns the chunk
    files left and the chunk count its manifest names. A run that finished first fails the check."""
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.time() + timeout
    while time.time() < deadline and len(list(chunks.glob("chunk-*.parquet"))) < count and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted(chunks.glob("chunk-*.parquet"))
    from extract.cache import MANIFEST_FILE, ChunkManifest

    total = ChunkManifest.read(chunks / MANIFEST_FILE).chunks
    assert count <= len(done) < total, "the run should have been killed part-way"
    return done, total

