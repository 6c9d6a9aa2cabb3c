"""``extract features`` and ``data faces`` as Dask tasks: the same bytes as the local run (which never imports
Dask), a worker killed mid-run, a task's error, bad flags. One tiny trained model (the session's, shared with
test_extract) and one two-worker cluster are shared by the module: TensorFlow processes are slow to start."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from common.errors import DataError
from common.executor import ExecutorSpec, machine_cores
from conftest import EXTRACT_VIDEOS as VIDEOS, REPO, run_cli, run_without_dask, tree_digest

TINY = Path(__file__).parent / "configs" / "tiny_extract.toml"      # chunk_videos = 1: a chunk per video
FACES = '[faces]\nframes = "linspace"\ncount = 4\nmin_face_size = 30\nchunk_videos = 2\n'
CLIP_SIZE = (320, 240)
KILL_DEADLINE_S = 120


def extract_cli(*args: str, root: Path, out: Path, subprocess_run: bool | None = None):
    return run_cli("extract", "features", *args, "--config", str(TINY), "--interim", str(root / "interim"),
                   "--models", str(root / "models"), "--out", str(out), subprocess_run=subprocess_run)


def same_parquet(a: Path, b: Path) -> None:
    """The same rows, scores, embeddings and run key; the same bytes too."""
    left, right = pq.read_table(a), pq.read_table(b)
    assert left.equals(right) and left.schema.metadata == right.schema.metadata
    assert a.read_bytes() == b.read_bytes()


@pytest.fixture(scope="module")
def workspace(extract_run):
    """A prepared dataset of 24 videos, a trained tiny smallcnn and its features, made by the local executor without
    importing Dask (the session's shared ones)."""
    return extract_run


@pytest.fixture(scope="module")
def cluster():
    """A scheduler here and two single-threaded worker processes, as ``dask worker --nthreads 1`` starts them."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=40) as local, Client(local) as client:
        yield local.scheduler_address, client


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Three short clips with a face (one frame without), and a corrupt file."""
    from bench.demo_video import render_frames, write_video

    root = tmp_path_factory.mktemp("clips")
    for i, n in enumerate((4, 5, 4)):
        write_video(root / f"clips/clip{i:02d}xxxx.mp4", render_frames(n, *CLIP_SIZE, seed=i,
                                                                       hidden=(1,) if i == 0 else ()))
    (root / "clips/zzzzcorrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    (root / "faces.toml").write_text(FACES)
    return root


@pytest.mark.parametrize("flags, words", [
    (("--executor", "dask"), "--executor dask needs --scheduler"),
    (("--executor", "dask", "--scheduler", "localhost:8786"), "expected tcp://host:port or local:N"),
    (("--executor", "dask", "--scheduler", "local:0"), "local:N needs a whole number 1 <= N <= "),
    (("--executor", "dask", "--scheduler", "local:-1"), "local:N needs a whole number 1 <= N <= "),
    (("--executor", "dask", "--scheduler", f"local:{machine_cores() + 1}"), f"1 <= N <= {machine_cores()} (the cores"),
    (("--scheduler", "local:2"), "needs --executor dask"),
])
@pytest.mark.parametrize("command", ["features", "faces"])
def test_bad_executor_flags_are_one_line(tmp_path, command, flags, words):
    if command == "features":
        res = run_cli("extract", "features", "--interim", str(tmp_path), *flags, subprocess_run=False)
    else:
        res = run_cli("data", "faces", "--videos", str(tmp_path), "--out", str(tmp_path / "o"), *flags,
                      subprocess_run=False)
    assert res.returncode == 2 and words in res.stderr and res.stderr.count("\n") == 1, res.stderr


def test_a_scheduler_port_that_refuses_is_reported_at_once():
    with socket.socket() as s:            # a port nothing listens on: bound, never listening, so it refuses
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
        start = time.perf_counter()
        with pytest.raises(DataError, match="cannot reach the Dask scheduler.*refused"):
            ExecutorSpec.parse("dask", address).open()
    assert time.perf_counter() - start < 10



def test_features_on_a_local_dask_cluster_equal_the_local_run(workspace, tmp_path):
    res = extract_cli("--executor", "dask", "--scheduler", "local:2", root=workspace, out=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "dask: 2 workers" in res.stdout and f"smallcnn: {VIDEOS} chunks written, 0 already complete" in res.stdout
    same_parquet(tmp_path / "synthetic/smallcnn.parquet", workspace / "features/synthetic/smallcnn.parquet")


def test_faces_on_dask_equal_the_local_run(clips, cluster):
    address, _ = cluster
    args = ("faces", "--videos", str(clips / "clips"), "--config", str(clips / "faces.toml"))
    local = run_without_dask("data", *args, "--out", str(clips / "local"))
    dask = run_cli("data", *args, "--out", str(clips / "dask"), "--executor", "dask", "--scheduler", address)
    for res in (local, dask):
        assert res.returncode == 0, res.stderr
        assert "4 videos (0 already done)" in res.stdout and "zzzzcorrupt.mp4" in res.stderr
    assert sorted(p.name for p in (clips / "dask").iterdir()) == ["clip00xxxx", "clip01xxxx", "clip02xxxx",
                                                                  "metadata.csv"]
    assert tree_digest(clips / "dask") == tree_digest(clips / "local")


def test_a_worker_killed_mid_run_still_completes_the_run(workspace, cluster, tmp_path):
    address, client = cluster
    out = tmp_path / "features"
    chunks = out / "synthetic/smallcnn.chunks"
    pids = sorted(client.run(os.getpid).values())
    cmd = [sys.executable, "-m", "extract", "features", "--config", str(TINY), "--interim",
           str(workspace / "interim"), "--models", str(workspace / "models"), "--out", str(out),
           "--executor", "dask", "--scheduler", address]
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + KILL_DEADLINE_S
    while time.time() < deadline and proc.poll() is None and not list(chunks.glob("chunk-*.parquet")):
        time.sleep(0.01)
    os.kill(pids[0], signal.SIGKILL)
    written_before_kill = len(list(chunks.glob("chunk-*.parquet")))
    stdout, stderr = proc.communicate(timeout=KILL_DEADLINE_S)
    assert proc.returncode == 0, stderr
    assert 1 <= written_before_kill < VIDEOS, "the worker should have been killed mid-run"
    assert not list(out.rglob(".tmp-*")), "a temporary file was left behind"
    same_parquet(out / "synthetic/smallcnn.parquet", workspace / "features/synthetic/smallcnn.parquet")
    # each chunk written once: by its task, or kept from an attempt that finished it before its worker died
    assert re.search(rf"smallcnn: {VIDEOS} chunks written( \(1 by an attempt whose worker died\))?, 0 already "
                     "complete", stdout), stdout
    again = extract_cli("--executor", "dask", "--scheduler", address, root=workspace, out=out)
    assert again.returncode == 0 and "smallcnn" in again.stdout and "is up to date" in again.stdout


def test_an_error_inside_a_task_is_one_line(workspace, cluster, tmp_path):
    """A damaged model: the DataError raised on a worker comes back as itself, one line naming the file, exit 2."""
    address, _ = cluster
    (tmp_path / "models/synthetic").mkdir(parents=True)
    (tmp_path / "models/synthetic/smallcnn.keras").write_bytes(b"PK\x03\x04 not a model")
    (tmp_path / "interim").symlink_to(workspace / "interim")
    res = extract_cli("--executor", "dask", "--scheduler", address, root=tmp_path, out=tmp_path / "features")
    assert res.returncode == 2 and "smallcnn.keras" in res.stderr and res.stderr.count("\n") == 1, res.stderr
    assert not (tmp_path / "features/synthetic/smallcnn.chunks").exists()      # stopped before any chunk state
