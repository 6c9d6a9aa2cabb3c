"""``python -m extract features`` and ``merge``: every trained backbone over every face crop of every split.

Output ``data/features/<NAME>/<backbone>.parquet`` (the feature cache; its layout and TensorFlow-free reader are
in ``extract.cache``).

Videos are cut into chunks of ``chunk_videos`` in sorted order; each chunk is written atomically to
``<backbone>.chunks/chunk-NNNNN.parquet`` and batches never straddle chunks, so a resumed run, or n shards
(``--shard i/n`` takes chunks i-1, i-1+n, ...), then ``merge``, write the same file as one uninterrupted run.

A chunk is also the unit of work on Dask (``--executor dask``): :func:`write_chunks` is the task, called with
plain data (:class:`ChunkJob`); each worker process sets TensorFlow up and loads each model once. Here
(``local``) one call writes every chunk through one input pipeline, as before.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from common.atomic import write_json
from common.errors import DataError
from common.executor import Executor, ExecutorSpec
from common.tensorflow_setup import Runtime, keras, setup, tf  # noqa: F401  (TensorFlow without its banner)
from data.tables import load_tables

from .backbones import feature_model, get_backbone, load_classifier
from .cache import (
    MANIFEST_FILE,
    ChunkManifest,
    check_features,
    feature_table,
    file_key,
    write_table,
    write_tables,
)
from .pipeline import chunked_dataset
from .runtime import infer, with_policy
from .settings import BackboneSpec, ExtractSettings


@dataclass(frozen=True)
class Shard:
    index: int   # 0-based
    count: int

    @classmethod
    def parse(cls, text: str | None) -> Shard:
        if text is None:
            return cls(0, 1)
        try:
            i, n = (int(x) for x in text.split("/"))
        except ValueError:
            raise DataError(f"--shard {text!r}: expected i/n, e.g. 1/4") from None
        if not 1 <= i <= n:
            raise DataError(f"--shard {text!r}: need 1 <= i <= n")
        return cls(i - 1, n)

    def takes(self, chunk: int) -> bool:
        return chunk % self.count == self.index


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def crop_rows(interim: Path) -> tuple[pd.DataFrame, list[str], Path]:
    """All sampled crops sorted by (video, frame, face), the sorted video list, and the dataset root."""
    videos, frames, root = load_tables(interim)
    order = sorted(videos["video"])
    rows = frames.sort_values(["video", "frame", "face"]).reset_index(drop=True)
    return rows, order, root


def run_key(spec: BackboneSpec, model_sha256: str, rows: pd.DataFrame, settings: ExtractSettings,
            runtime: str) -> str:
    """What a chunk depends on: the model bytes, the crops, the view, the batching, device kind and precision
    (``runtime``: the workers' ``Runtime.describe()``; chunks made on a GPU in mixed precision never merge with
    CPU float32 chunks)."""
    h = hashlib.sha256()
    h.update(runtime.encode())
    h.update(model_sha256.encode())
    h.update(pd.util.hash_pandas_object(rows[["video", "frame", "face", "path"]], index=False).values.tobytes())
    h.update(json.dumps([spec.input_size, spec.center_crop, settings.batch_size, settings.chunk_videos]).encode())
    if settings.embedding_dtype != "float32":      # float32 keys stay those of caches written before the option
        h.update(settings.embedding_dtype.encode())
    return h.hexdigest()


def inference_model(trained: keras.Model, runtime: Runtime) -> keras.Model:
    """The embedding + score model, in mixed precision and under the GPU strategy where the runtime has them."""
    if not runtime.mixed_precision and runtime.gpus <= 1:
        return feature_model(trained)
    with runtime.strategy.scope():
        return feature_model(with_policy(trained, "mixed_float16" if runtime.mixed_precision else "float32"))


# --- the tasks: module-level functions of plain data, run in this process or on a Dask worker -------------

@dataclass(frozen=True)
class ModelRef:
    """A trained backbone as a worker loads it: the settings TensorFlow is set up with, the model file
    (absolute path) and the SHA-256 of its bytes (part of the run key)."""

    spec: BackboneSpec
    settings: ExtractSettings
    model_file: str
    sha256: str


@dataclass(frozen=True, eq=False)
class ChunkJob:
    """One task's chunks: ``bounds`` = ((chunk id, first row, end row), ...) of ``rows`` (n crops sorted by video,
    frame, face; columns video, frame, face and path, the crop's absolute path), written to
    ``chunk_dir/chunk-NNNNN.parquet`` under run key ``key`` by workers whose runtime is ``runtime``."""

    model: ModelRef
    runtime: str
    key: str
    chunk_dir: str
    rows: pd.DataFrame
    bounds: tuple[tuple[int, int, int], ...]
    progress: bool = False       # a frames bar; only in this process, never on a worker


@dataclass(frozen=True)
class ChunkReport:
    """What a task did: the chunks it wrote, those it found complete (an earlier attempt of the same task wrote
    them, then its worker died), crops scored, the paths of unreadable crops it skipped, and its seconds."""

    written: tuple[int, ...]
    found: tuple[int, ...]
    crops: int
    unreadable: tuple[str, ...]
    seconds: float


# This process's inference models, one per model file: {absolute path: (SHA-256, model, embedding length)}.
_MODELS: dict[str, tuple[str, keras.Model, int]] = {}


def _runtime(settings: ExtractSettings) -> Runtime:
    """TensorFlow set up in this process as ``settings`` say. ``setup`` runs once per process, so a long-lived
    worker that an earlier run set up with another ``mixed_precision`` is refused rather than silently used."""
    runtime = setup(settings.mixed_precision, settings.intra_op_threads, settings.inter_op_threads,
                    deterministic=True)
    wanted = {"on": True, "off": False}.get(settings.mixed_precision, bool(runtime.gpus))
    if runtime.mixed_precision != wanted:
        raise DataError(f"host {socket.gethostname()} (pid {os.getpid()}): TensorFlow was set up here by an earlier "
                        f"run ({runtime.describe()}), not as mixed_precision = {settings.mixed_precision!r} asks; "
                        "restart this worker")
    return runtime


def worker_runtime(settings: ExtractSettings) -> str:
    """Task: set TensorFlow up in this process (once per process) as ``settings`` say; its description."""
    return _runtime(settings).describe()


def load_model(ref: ModelRef) -> int:
    """Task: load ``ref``'s inference model into this process's cache; returns the embedding length. A damaged
    model file stops the run here, before any chunk state is written."""
    return _model(ref, _runtime(ref.settings))[1]


def _model(ref: ModelRef, runtime: Runtime) -> tuple[keras.Model, int]:
    """This process's inference model for ``ref``: loaded once, and again only when the file's bytes change."""
    cached = _MODELS.get(ref.model_file)
    if cached is None or cached[0] != ref.sha256:
        path = Path(ref.model_file)
        if _sha256_file(path) != ref.sha256:
            raise DataError(f"{path}: not the model file this run started with (changed since, or another copy "
                            f"on host {socket.gethostname()}); rerun 'python -m extract features'")
        model = inference_model(load_classifier(path), runtime)
        cached = _MODELS[ref.model_file] = (ref.sha256, model, int(model.outputs[0].shape[-1]))
    return cached[1], cached[2]


def chunk_path(chunk_dir: Path, k: int) -> Path:
    return chunk_dir / f"chunk-{k:05d}.parquet"


def chunk_complete(path: Path, key: str) -> bool:
    """A chunk is complete when its file is there, readable, and of this run key (files are renamed into place
    whole, so a readable one is a finished one)."""
    return path.exists() and file_key(path) == key


def write_chunks(job: ChunkJob) -> ChunkReport:
    """Task: score and write each chunk of ``job`` that is not complete yet. Harmless to rerun: a chunk that an
    earlier attempt finished is skipped, and each chunk is written to a temporary name, then renamed."""
    start = time.perf_counter()
    runtime = _runtime(job.model.settings)
    if runtime.describe() != job.runtime:
        raise DataError(f"host {socket.gethostname()} (pid {os.getpid()}): TensorFlow runs on "
                        f"{runtime.describe()} here, but this run's key was made for {job.runtime}; give every "
                        "worker the same kind of device (and restart workers that ran another config)")
    chunk_dir = Path(job.chunk_dir)
    todo = tuple(b for b in job.bounds if not chunk_complete(chunk_path(chunk_dir, b[0]), job.key))
    crops, unreadable = 0, ()
    if todo:
        model, dim = _model(job.model, runtime)
        crops, unreadable = _run_chunks(job.model.spec, model, dim, job.rows, todo, chunk_dir, job.key,
                                        job.model.settings, runtime, job.progress)
    return ChunkReport(written=tuple(k for k, _, _ in todo), found=tuple(b[0] for b in job.bounds if b not in todo),
                       crops=crops, unreadable=unreadable, seconds=time.perf_counter() - start)


def _run_chunks(spec: BackboneSpec, model: keras.Model, dim: int, rows: pd.DataFrame,
                bounds: tuple[tuple[int, int, int], ...], chunk_dir: Path, key: str, settings: ExtractSettings,
                runtime: Runtime, progress: bool) -> tuple[int, tuple[str, ...]]:
    """Score the rows of ``bounds`` through one input pipeline (``settings.batch_size``) and write each chunk as
    it completes, embeddings as ``settings.embedding_dtype``; returns (crops scored, unreadable crops skipped)."""
    paths = np.array(rows["path"].tolist())
    backbone = get_backbone(spec.name)
    total = sum(end - start for _, start, end in bounds)
    pending = {k: [] for k, _, _ in bounds}
    order = [k for k, _, _ in bounds]
    unreadable: list[str] = []

    def flush(k: int) -> None:
        start, end = next((s, e) for c, s, e in bounds if c == k)
        idx, emb, score = _concat(pending.pop(k), dim)
        unreadable.extend(_unreadable(paths, range(start, end), idx))
        sub = rows.iloc[idx]
        write_table(feature_table(sub["video"].to_numpy(), sub["frame"].to_numpy(), sub["face"].to_numpy(), score,
                                  emb, key, dim, settings.embedding_dtype), chunk_path(chunk_dir, k))

    with tqdm(total=total, desc=f"{spec.name} features", unit="frame", disable=None if progress else True) as bar:
        for k, idx, images in chunked_dataset(paths, [b for b in bounds if b[2] > b[1]], spec.view,
                                              backbone.preprocess, settings.batch_size):
            chunk = int(k[0])
            while order and order[0] != chunk:
                flush(order.pop(0))
            emb, score = infer(model, images, runtime)
            pending[chunk].append((idx.numpy(), np.asarray(emb, np.float32), np.asarray(score, np.float32).reshape(-1)))
            bar.update(len(idx))
        while order:
            flush(order.pop(0))
    return total - len(unreadable), tuple(unreadable)


def _concat(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], dim: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batches of (row indices (B,), embeddings (B, D), scores (B,)) joined; empty arrays when there is none."""
    if not parts:
        return np.zeros(0, np.int64), np.zeros((0, dim), np.float32), np.zeros(0, np.float32)
    idx, emb, score = (np.concatenate(column) for column in zip(*parts))
    return idx, emb, score


def _unreadable(paths, rows: range, done: np.ndarray) -> list[str]:
    """The paths of the rows of ``rows`` the decoder skipped (not in ``done``), in row order."""
    return [str(paths[i]) for i in sorted(set(rows) - set(done.tolist()))]


def _warn_unreadable(paths) -> None:
    for path in paths:
        print(f"warning: unreadable face crop skipped: {path}", file=sys.stderr)


# --- the client: what to run, on which executor, and the merge ----------------------------------------------

def _tasks(ex: Executor, fn: Callable, jobs: list, desc: str, unit: str = "task") -> list:
    """``fn(job)`` for every job, results in job order: here, in order (a job shows its own progress), or as
    Dask tasks (on GPU workers where the cluster has them) with a bar of finished tasks."""
    if ex.in_process:
        return [fn(job) for job in jobs]
    results = [None] * len(jobs)
    for i, result in ex.map(fn, jobs, desc=desc, unit=unit, gpu=True):
        results[i] = result
    return results


def _worker_runtime(ex: Executor, settings: ExtractSettings, name: str) -> str:
    """The runtime the run key describes: this process's, or the Dask workers' (asked of each, side by side,
    which also starts TensorFlow on all of them at once), which must agree."""
    runtimes = sorted(set(_tasks(ex, worker_runtime, [settings] * ex.workers, f"{name} set-up")))
    if len(runtimes) > 1:
        raise DataError(f"the Dask workers' TensorFlow differs ({'; '.join(runtimes)}); give every worker the "
                        "same kind of device")
    return runtimes[0]


def chunk_bounds(rows: pd.DataFrame, videos: list[str], chunk_videos: int) -> list[tuple[int, int, int]]:
    """(chunk id, first row, end row) of every chunk of ``chunk_videos`` videos (``videos`` sorted, ``rows``
    sorted by video, so a chunk's rows are contiguous); a chunk whose videos have no crop is (k, 0, 0)."""
    n_chunks = max(1, -(-len(videos) // chunk_videos))
    chunk_of_video = {v: i // chunk_videos for i, v in enumerate(videos)}
    chunk = rows["video"].map(chunk_of_video).to_numpy(np.int64)
    starts = np.searchsorted(chunk, np.arange(n_chunks), side="left")
    ends = np.searchsorted(chunk, np.arange(n_chunks), side="right")
    return [(k, int(s), int(e)) if e > s else (k, 0, 0) for k, (s, e) in enumerate(zip(starts, ends))]


def _job(model: ModelRef, runtime: str, key: str, chunk_dir: Path, rows: pd.DataFrame,
         bounds: list[tuple[int, int, int]], progress: bool) -> ChunkJob:
    """A task for ``bounds``: only the rows they cover go with it, the bounds re-based onto those rows."""
    spans = [(s, e) for _, s, e in bounds if e > s]
    lo, hi = min((s for s, _ in spans), default=0), max((e for _, e in spans), default=0)
    rebased = tuple((k, s - lo, e - lo) if e > s else (k, 0, 0) for k, s, e in bounds)
    return ChunkJob(model, runtime, key, str(chunk_dir.absolute()), rows.iloc[lo:hi].reset_index(drop=True),
                    rebased, progress)


def _summary(name: str, reports: list[ChunkReport], complete: int, seconds: float, where: str) -> str:
    """One line: chunks written (and kept from a lost attempt), already complete, crops and frames/s."""
    kept = sum(len(r.found) for r in reports)
    written = sum(len(r.written) for r in reports) + kept
    crops = sum(r.crops for r in reports)
    skipped = sum(len(r.unreadable) for r in reports)
    return (f"{name}: {written} chunks written{f' ({kept} by an attempt whose worker died)' if kept else ''}, "
            f"{complete} already complete; {crops} crops in {seconds:.1f} s ({crops / max(seconds, 1e-9):.0f} "
            f"frames/s, {where}){f', {skipped} unreadable skipped' if skipped else ''}")


def extract_backbone(spec: BackboneSpec, settings: ExtractSettings, interim: Path, models_dir: Path,
                     out_dir: Path, shard: Shard, executor: Executor | None = None) -> Path | None:
    """Write this shard's missing chunks, here or as tasks on ``executor``'s workers; merge when every chunk is
    there. Returns the merged file or None. With Dask the run key describes the workers' runtime (asked of
    each worker; every task checks its own), and this process never sets TensorFlow up."""
    ex = executor or ExecutorSpec().open()
    model_file = models_dir / f"{spec.name}.keras"
    if not model_file.exists():
        raise DataError(f"{model_file}: model not found; run 'python -m extract train' (make features) first")
    rows, videos, root = crop_rows(interim)
    runtime = _worker_runtime(ex, settings, spec.name)
    sha256 = _sha256_file(model_file)
    key = run_key(spec, sha256, rows, settings, runtime)
    final = out_dir / f"{spec.name}.parquet"
    if final.exists() and file_key(final) == key:
        print(f"{spec.name}: {final} is up to date")
        return final
    model = ModelRef(spec, settings, str(model_file.absolute()), sha256)
    # every worker loads the model now, side by side; a damaged model stops here, before any chunk state
    _tasks(ex, load_model, [model] * ex.workers, f"{spec.name} model")
    chunk_dir = out_dir / f"{spec.name}.chunks"
    manifest = chunk_dir / MANIFEST_FILE
    if chunk_dir.exists() and _manifest_key(manifest) != key:
        shutil.rmtree(chunk_dir)
    chunk_dir.mkdir(parents=True, exist_ok=True)
    bounds = chunk_bounds(rows, videos, settings.chunk_videos)
    ChunkManifest(key, len(bounds), spec.name).write(manifest)

    mine = [b for b in bounds if shard.takes(b[0])]
    todo = [b for b in mine if not chunk_complete(chunk_path(chunk_dir, b[0]), key)]
    if todo:
        crops = rows[["video", "frame", "face"]].assign(path=[str(root.absolute() / p) for p in rows["path"]])
        groups = [todo] if ex.in_process else [[b] for b in todo]     # here: one pipeline; on Dask: a task per chunk
        jobs = [_job(model, runtime, key, chunk_dir, crops, group, progress=ex.in_process) for group in groups]
        start = time.perf_counter()
        reports = _tasks(ex, write_chunks, jobs, f"{spec.name} chunks", unit="chunk")
        seconds = time.perf_counter() - start
        _warn_unreadable(path for r in reports for path in r.unreadable)
        print(_summary(spec.name, reports, len(mine) - len(todo), seconds, ex.label))
        crops = sum(r.crops for r in reports)
        if crops:          # the measured cost the frame-budget protocol reports (crops of this run only)
            write_json(out_dir / f"{spec.name}.throughput.json",
                       {"backbone": spec.name, "crops": crops, "seconds": round(seconds, 3),
                        "frames_per_s": crops / max(seconds, 1e-9), "executor": ex.label, "runtime": runtime})
    missing = [k for k in range(len(bounds)) if not chunk_path(chunk_dir, k).exists()]
    if missing:
        print(f"{spec.name}: shard {shard.index + 1}/{shard.count} done; {len(missing)} chunks left to other "
              f"shards; run 'python -m extract merge' when all are in {chunk_dir}")
        return None
    return merge_chunks(spec.name, out_dir, key)


def _manifest_key(path: Path) -> str | None:
    """The run key of a chunk folder's manifest; None when it is missing or damaged (the folder is started
    again)."""
    try:
        return ChunkManifest.read(path).key if path.exists() else None
    except DataError:
        return None


def merge_chunks(name: str, out_dir: Path, key: str | None = None) -> Path:
    """Join ``<name>.chunks/chunk-*.parquet`` into ``<name>.parquet``; every chunk must be there, from one run key."""
    chunk_dir = out_dir / f"{name}.chunks"
    manifest = chunk_dir / MANIFEST_FILE
    if not manifest.exists():
        raise DataError(f"{chunk_dir}: no chunks to merge; run 'python -m extract features' first")
    info = ChunkManifest.read(manifest)
    key = key or info.key
    files = [chunk_dir / f"chunk-{k:05d}.parquet" for k in range(info.chunks)]
    missing = [f.name for f in files if not f.exists()]
    if missing:
        raise DataError(f"{chunk_dir}: {len(missing)} of {len(files)} chunks missing (e.g. {missing[0]}); "
                        "run every shard of 'python -m extract features --shard i/n' first")
    stale = [f.name for f in files if file_key(f) != key]
    if stale:
        raise DataError(f"{chunk_dir}/{stale[0]}: made from another model or dataset; rerun that shard")
    target = out_dir / f"{name}.parquet"
    try:
        rows = write_tables(_checked_chunks(files), target)     # one chunk in memory at a time
    except (pa.ArrowException, ValueError) as e:                 # ValueError: a chunk of another schema
        raise DataError(f"{chunk_dir}: chunks that cannot be joined ({str(e).splitlines()[0][:160]}); rerun "
                        "their shards") from None
    shutil.rmtree(chunk_dir)
    print(f"{name}: wrote {target} ({rows} rows)")
    return target


def _checked_chunks(files: list[Path]):
    """Each chunk file as a table, checked (a damaged chunk never reaches the merged file), in video order."""
    last = None
    for f in files:
        try:
            table = pq.read_table(f)
        except (OSError, pa.ArrowException) as e:
            raise DataError(f"{f}: unreadable chunk ({str(e).splitlines()[0][:160]}); rerun its shard") from None
        frames, _ = check_features(f, table)
        if len(frames):
            if last is not None and frames["video"].iloc[0] <= last:
                raise DataError(f"{f}: video {frames['video'].iloc[0]!r} does not sort after the previous chunk's "
                                f"{last!r}; rerun its shard")
            last = frames["video"].iloc[-1]
        yield table


def score_crops(spec: BackboneSpec, model_file: Path, paths: list[str], settings: ExtractSettings
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One backbone over a list of crop files, in memory (no cache): (readable row indices (n,), embeddings
    (n, D) float32, scores (n,) float32). Unreadable crops are left out with a warning."""
    if not model_file.exists():
        raise DataError(f"{model_file}: model not found; run 'make features' for this dataset first")
    runtime = setup(settings.mixed_precision, settings.intra_op_threads, settings.inter_op_threads,
                    deterministic=True)
    model = inference_model(load_classifier(model_file), runtime)
    dim = int(model.outputs[0].shape[-1])
    parts = []
    if paths:
        for _, idx, images in chunked_dataset(np.array(paths), [(0, 0, len(paths))], spec.view,
                                              get_backbone(spec.name).preprocess, settings.batch_size):
            emb, score = infer(model, images, runtime)
            parts.append((idx.numpy(), np.asarray(emb, np.float32), np.asarray(score, np.float32).reshape(-1)))
    idx, emb, score = _concat(parts, dim)
    _warn_unreadable(_unreadable(paths, range(len(paths)), idx))
    return idx, emb, score
