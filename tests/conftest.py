"""Shared helpers: tiny face-layout datasets written the way other programs write them."""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import os
import shutil
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
CONFIGS = Path(__file__).resolve().parent / "configs"
TINY_CHAIN = CONFIGS / "tiny_chain.toml"
TINY_EXTRACT = CONFIGS / "tiny_extract.toml"


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



# --- artefacts built once per test session ------------------------------------------------------------------

def built_once(tmp_path_factory, name: str, build) -> Path:
    """The folder ``name`` made by ``build(folder)`` once per test session, whichever pytest-xdist worker asks
    first: that worker builds it under a lock in the session's shared temporary folder while the others wait, then
    every worker reuses it. Tests only read it; a test that changes an artefact changes a copy in its own
    tmp_path."""
    from common.atomic import locked

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):    # each worker has its own basetemp in the session's folder
        base = base.parent
    folder, done, failed = base / name, base / f"{name}.built", base / f"{name}.failed"
    with locked(folder):
        if failed.exists():
            pytest.fail(f"building the shared {name} folder failed in another worker: {failed.read_text()}")
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            try:
                build(folder)
            except BaseException as e:
                failed.write_text(f"{type(e).__name__}: {e}"[-3000:])
                raise
            done.touch()
    return folder


def run_steps(*steps: tuple) -> None:
    """``run_cli`` each step in turn, failing on the first that does not succeed."""
    for step in steps:
        res = run_cli(*step)
        assert res.returncode == 0, f"{step[:2]}: {res.stderr[-3000:]}"


def tiny_chain(root: Path, name: str = "a") -> None:
    """The whole chain on tiny data (tiny_chain.toml), each step as a user runs it: synth into ``root/raw``,
    prepare, train, features, ensemble fit and report, into ``root``'s interim, models, features, predictions
    and reports folders."""
    c = ("--config", str(TINY_CHAIN))
    folders = ("--name", name, "--interim", str(root / "interim"), "--models", str(root / "models"))
    run_steps(("data", "synth", "--out", str(root / "raw"), *c),
              ("data", "prepare", "--data", str(root / "raw"), "--name", name, "--out", str(root / "interim"), *c),
              ("extract", "train", *folders, *c),
              ("extract", "features", *folders, "--out", str(root / "features"), *c),
              ("ensemble", "fit", *folders, "--features", str(root / "features"), "--out", str(root / "predictions"),
               *c),
              ("evaluate", "report", "--name", name, "--predictions", str(root / "predictions"), "--out",
               str(root / "reports"), *c))


@pytest.fixture(scope="session")
def tiny_chain_run(tmp_path_factory) -> Path:
    """One run of the tiny chain (dataset ``a``), shared by the session: test_reproducible compares a fresh run
    with it, test_transfer scores a second dataset with its models."""
    return built_once(tmp_path_factory, "tiny_chain", tiny_chain)


# ``python -m <stage> <args>`` with the default executor, failing if anything imported Dask
WITHOUT_DASK = ("import sys; from importlib import import_module; from common.cli import run; "
                "code = run(import_module(sys.argv[1] + '.__main__').build_parser(), sys.argv[2:]); "
                "assert 'dask' not in sys.modules, 'the local run imported Dask'; sys.exit(code)")


def run_without_dask(stage: str, *args: str) -> subprocess.CompletedProcess:
    """``python -m <stage> <args>`` in a process of its own that fails if the run imported Dask."""
    return subprocess.run([sys.executable, "-c", WITHOUT_DASK, stage, *args], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)


EXTRACT_VIDEOS = 24


def extract_workspace(root: Path) -> None:
    """A prepared dataset of 24 videos (``synthetic``), a tiny smallcnn trained on it (tiny_extract.toml) and its
    features file, made by the local executor without importing Dask."""
    c = ("--config", str(TINY_EXTRACT))
    folders = ("--interim", str(root / "interim"), "--models", str(root / "models"))
    run_steps(("data", "synth", "--out", str(root / "raw"), "--videos", str(EXTRACT_VIDEOS), "--frames", "5",
               "--size", "64", "--seed", "5", "--workers", "1"),
              ("data", "prepare", "--data", str(root / "raw"), "--name", "synthetic", "--out", str(root / "interim"),
               *c),
              ("extract", "train", *c, *folders))
    res = run_without_dask("extract", "features", *c, *folders, "--out", str(root / "features"))
    assert res.returncode == 0, res.stderr[-3000:]


@pytest.fixture(scope="session")
def extract_run(tmp_path_factory) -> Path:
    """The tiny extract workspace, shared by test_extract and test_dask (read only)."""
    return built_once(tmp_path_factory, "extract", extract_workspace)
