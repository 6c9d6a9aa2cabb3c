"""``python -m extract features`` and ``merge``: every trained backbone over every face crop of every split.

Output ``data/features/<NAME>/<backbone>.parquet`` (the feature cache; its layout and TensorFlow-free reader are
in ``extract.cache``).

Videos are cut into chunks of ``chunk_videos`` in sorted order; each chunk is written atomically to
``<backbone>.chunks/chunk-NNNNN.parquet`` and batches never straddle chunks, so a resumed run, or n shards
(``--shard i/n`` takes chunks i-1, i-1+n, ...), then ``merge``, write the same file as one uninterrupted run.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from common.atomic import atomic_path
from common.errors import DataError
from common.tensorflow_setup import Runtime, keras, setup, tf  # noqa: F401  (TensorFlow without its banner)
from data.tables import load_tables

from .backbones import feature_model, get_backbone, load_classifier
from .cache import check_features, feature_table, file_key, write_table
from .pipeline import chunked_dataset
from .runtime import infer, with_policy
from .settings import BackboneSpec, ExtractSettings


@dataclass(frozen=True)
class Shard:
    index: int   # 0-based
    count: int

    @classmethod
    def parse(cls, text: str | None) -> "Shard":
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


def run_key(spec: BackboneSpec, model_file: Path, rows: pd.DataFrame, settings: ExtractSettings,
            runtime: Runtime) -> str:
    """What a chunk depends on: the model bytes, the crops, the view, the batching, device kind and precision
    (chunks made on a GPU in mixed precision never merge with CPU float32 chunks)."""
    h = hashlib.sha256()
    h.update(runtime.describe().encode())
    h.update(_sha256_file(model_file).encode())
    h.update(pd.util.hash_pandas_object(rows[["video", "frame", "face", "path"]], index=False).values.tobytes())
    h.update(json.dumps([spec.input_size, spec.center_crop, settings.batch_size, settings.chunk_videos]).encode())
    return h.hexdigest()


def inference_model(trained: keras.Model, runtime: Runtime) -> keras.Model:
    """The embedding + score model, in mixed precision and under the GPU strategy where the runtime has them."""
    if not runtime.mixed_precision and runtime.gpus <= 1:
        return feature_model(trained)
    with runtime.strategy.scope():
        return feature_model(with_policy(trained, "mixed_float16" if runtime.mixed_precision else "float32"))


def extract_backbone(spec: BackboneSpec, settings: ExtractSettings, interim: Path, models_dir: Path,
                     out_dir: Path, shard: Shard) -> Path | None:
    """Write this shard's missing chunks; merge when every chunk is there. Returns the merged file or None."""
    model_file = models_dir / f"{spec.name}.keras"
    if not model_file.exists():
        raise DataError(f"{model_file}: model not found; run 'python -m extract train' (make features) first")
    rows, videos, root = crop_rows(interim)
    runtime = setup(settings.mixed_precision, settings.intra_op_threads, settings.inter_op_threads,
                    deterministic=True)
    key = run_key(spec, model_file, rows, settings, runtime)
    final = out_dir / f"{spec.name}.parquet"
    if final.exists() and file_key(final) == key:
        print(f"{spec.name}: {final} is up to date")
        return final
    classifier = load_classifier(model_file)      # a damaged model stops here, before any chunk state is written
    chunk_dir = out_dir / f"{spec.name}.chunks"
    manifest = chunk_dir / "manifest.json"
    if chunk_dir.exists() and (not manifest.exists() or _manifest(manifest).get("key") != key):
        shutil.rmtree(chunk_dir)
    chunk_dir.mkdir(parents=True, exist_ok=True)
    n_chunks = max(1, -(-len(videos) // settings.chunk_videos))
    with atomic_path(manifest) as tmp:
        tmp.write_text(json.dumps({"key": key, "chunks": n_chunks, "backbone": spec.name}))

    chunk_of_video = {v: i // settings.chunk_videos for i, v in enumerate(videos)}
    rows["chunk"] = rows["video"].map(chunk_of_video).astype(int)
    todo = [k for k in range(n_chunks) if shard.takes(k) and not (chunk_dir / f"chunk-{k:05d}.parquet").exists()]
    if todo:
        model = inference_model(classifier, runtime)
        dim = int(model.outputs[0].shape[-1])
        bounds = []
        for k in todo:
            idx = np.flatnonzero(rows["chunk"].to_numpy() == k)
            bounds.append((k, int(idx[0]) if len(idx) else 0, int(idx[-1]) + 1 if len(idx) else 0))
        _run_chunks(spec, model, dim, rows, root, bounds, chunk_dir, key, settings.batch_size, runtime)
    missing = [k for k in range(n_chunks) if not (chunk_dir / f"chunk-{k:05d}.parquet").exists()]
    if missing:
        print(f"{spec.name}: shard {shard.index + 1}/{shard.count} done; {len(missing)} chunks left to other "
              f"shards; run 'python -m extract merge' when all are in {chunk_dir}")
        return None
    return merge_chunks(spec.name, out_dir, key)


def _run_chunks(spec: BackboneSpec, model: keras.Model, dim: int, rows: pd.DataFrame, root: Path,
                bounds: list[tuple[int, int, int]], chunk_dir: Path, key: str, batch_size: int,
                runtime: Runtime) -> None:
    paths = np.array([str(root / p) for p in rows["path"]])
    backbone = get_backbone(spec.name)
    total = sum(end - start for _, start, end in bounds)
    pending = {k: [] for k, _, _ in bounds}
    order = [k for k, _, _ in bounds]
    skipped = 0

    def flush(k: int) -> None:
        nonlocal skipped
        start, end = next((s, e) for c, s, e in bounds if c == k)
        idx, emb, score = _concat(pending.pop(k), dim)
        skipped += _warn_unreadable(paths, range(start, end), idx)
        sub = rows.iloc[idx]
        write_table(feature_table(sub["video"].to_numpy(), sub["frame"].to_numpy(), sub["face"].to_numpy(), score, emb, key, dim),
               chunk_dir / f"chunk-{k:05d}.parquet")

    start_time = time.perf_counter()
    with tqdm(total=total, desc=f"{spec.name} features", unit="frame", disable=None) as bar:
        for k, idx, images in chunked_dataset(paths, [b for b in bounds if b[2] > b[1]], spec.view,
                                              backbone.preprocess, batch_size):
            chunk = int(k[0])
            while order and order[0] != chunk:
                flush(order.pop(0))
            emb, score = infer(model, images, runtime)
            pending[chunk].append((idx.numpy(), np.asarray(emb, np.float32), np.asarray(score, np.float32).reshape(-1)))
            bar.update(len(idx))
        while order:
            flush(order.pop(0))
    seconds = time.perf_counter() - start_time
    print(f"{spec.name}: {total - skipped} crops in {seconds:.1f} s ({(total - skipped) / max(seconds, 1e-9):.0f} "
          f"frames/s){f', {skipped} unreadable skipped' if skipped else ''}")


def _concat(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], dim: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batches of (row indices (B,), embeddings (B, D), scores (B,)) joined; empty arrays when there is none."""
    if not parts:
        return np.zeros(0, np.int64), np.zeros((0, dim), np.float32), np.zeros(0, np.float32)
    idx, emb, score = (np.concatenate(column) for column in zip(*parts))
    return idx, emb, score


def _warn_unreadable(paths, rows: range, done: np.ndarray) -> int:
    """Warn for each row of ``rows`` the decoder skipped (not in ``done``); returns how many."""
    missing = sorted(set(rows) - set(done.tolist()))
    for i in missing:
        print(f"warning: unreadable face crop skipped: {paths[i]}", file=sys.stderr)
    return len(missing)


MAX_CHUNKS = 10_000_000


def _manifest(path: Path) -> dict:
    """A chunk folder's manifest; an unreadable one reads as {} (it is rewritten, or refused by merge)."""
    try:
        info = json.loads(path.read_text())
    except (ValueError, OSError, RecursionError):
        return {}
    return info if isinstance(info, dict) else {}


def merge_chunks(name: str, out_dir: Path, key: str | None = None) -> Path:
    """Join ``<name>.chunks/chunk-*.parquet`` into ``<name>.parquet``; every chunk must be there, from one run key."""
    chunk_dir = out_dir / f"{name}.chunks"
    manifest = chunk_dir / "manifest.json"
    if not manifest.exists():
        raise DataError(f"{chunk_dir}: no chunks to merge; run 'python -m extract features' first")
    info = _manifest(manifest)
    if not isinstance(info.get("key"), str) or not isinstance(info.get("chunks"), int) or \
            isinstance(info.get("chunks"), bool) or not 1 <= info["chunks"] <= MAX_CHUNKS:
        raise DataError(f"{manifest}: not a chunk manifest (needs a text 'key' and 'chunks' in [1, {MAX_CHUNKS}])")
    key = key or info["key"]
    files = [chunk_dir / f"chunk-{k:05d}.parquet" for k in range(info["chunks"])]
    missing = [f.name for f in files if not f.exists()]
    if missing:
        raise DataError(f"{chunk_dir}: {len(missing)} of {len(files)} chunks missing (e.g. {missing[0]}); "
                        "run every shard of 'python -m extract features --shard i/n' first")
    stale = [f.name for f in files if file_key(f) != key]
    if stale:
        raise DataError(f"{chunk_dir}/{stale[0]}: made from another model or dataset; rerun that shard")
    try:
        table = pa.concat_tables([pq.read_table(f) for f in files])
    except (OSError, pa.ArrowException) as e:
        raise DataError(f"{chunk_dir}: chunks that cannot be joined ({str(e).splitlines()[0][:160]}); rerun "
                        "their shards") from None
    target = out_dir / f"{name}.parquet"
    check_features(chunk_dir, table)         # a damaged chunk never reaches the merged file
    write_table(table, target)
    shutil.rmtree(chunk_dir)
    print(f"{name}: wrote {target} ({table.num_rows} rows)")
    return target


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
    _warn_unreadable(paths, range(len(paths)), idx)
    return idx, emb, score
