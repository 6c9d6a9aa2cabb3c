"""``python -m bench extract``: frames/s of one backbone, three ways, on the prepared dataset.

a. model only: ``predict_on_batch`` on preprocessed tensors already in memory;
b. the suite's pipeline: ``tf.data`` parallel decode + resize + batching + prefetch from the image files, batches
   cut per chunk exactly as ``extract features`` does;
c. a naive baseline in the seed project's style: a ``keras.utils.PyDataset`` (Keras 3's ``Sequence``) that opens
   images one by one with PIL, and ``model.predict`` called per batch.

Each TensorFlow setting (oneDNN on/off, thread pools) runs in its own process, since they are fixed at start-up;
a, b and c of one setting run in the same process, so their ratios are measured side by side.
Writes ``reports/bench/extract.json``.

With ``--dask N`` it measures instead ``python -m extract features`` itself, run here and as Dask tasks on a
``local:N`` cluster, one after the other on the same data: wall seconds, the chunk phase's frames/s and the
ratios; writes ``reports/bench/extract_dask.json``.
"""
from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common.atomic import write_json
from common.errors import DataError

SETTINGS = [  # name, environment, intra-op threads, inter-op threads
    ("default", {"TF_ENABLE_ONEDNN_OPTS": "1"}, 0, 0),
    ("onednn_off", {"TF_ENABLE_ONEDNN_OPTS": "0"}, 0, 0),
    ("intra2_inter1", {"TF_ENABLE_ONEDNN_OPTS": "1"}, 2, 1),
]
WARMUP_BATCHES = 3


def _timed(batches, step) -> float:
    """Frames/s of ``step(batch) -> frames`` over ``batches``, after a few warm-up batches."""
    it = iter(batches)
    for _ in range(WARMUP_BATCHES):
        batch = next(it, None)
        if batch is not None:
            step(batch)
    start = time.perf_counter()
    count = sum(step(b) for b in it)
    return count / (time.perf_counter() - start)


def _model_only(model, runtime, pre, n: int, bs: int, size: int) -> float:
    """a. the model alone, on one preprocessed batch in memory."""
    from common.tensorflow_setup import tf

    from extract.runtime import infer

    x = tf.constant(pre(np.random.default_rng(0).uniform(0, 255, (bs, size, size, 3)).astype("float32")))

    def on_tensors(batch):
        infer(model, batch, runtime)
        return int(batch.shape[0])
    return _timed((x for _ in range(WARMUP_BATCHES + max(1, n // bs))), on_tensors)


def _pipeline(model, runtime, pre, rows, videos, paths, spec, chunk_videos: int, bs: int) -> float:
    """b. the suite's tf.data pipeline from the files, cut into chunks as ``extract features`` cuts them."""
    from extract.pipeline import chunked_dataset
    from extract.runtime import infer

    chunk_of = {v: i // chunk_videos for i, v in enumerate(videos)}
    chunk = rows["video"].map(chunk_of).to_numpy()
    bounds = [(int(k), int(np.flatnonzero(chunk == k)[0]), int(np.flatnonzero(chunk == k)[-1]) + 1)
              for k in np.unique(chunk)]

    def on_pipeline(batch):
        infer(model, batch[2], runtime)
        return int(batch[1].shape[0])
    return _timed(chunked_dataset(paths, bounds, spec.view, pre, bs), on_pipeline)


def _naive(model, pre, paths, spec, bs: int) -> float:
    """c. PIL one image at a time in a ``keras.utils.PyDataset``, ``model.predict`` per batch."""
    from PIL import Image

    from common.tensorflow_setup import keras

    size = spec.input_size

    class NaiveSequence(keras.utils.PyDataset):
        def __len__(self):
            return (len(paths) + bs - 1) // bs

        def __getitem__(self, i):
            images = []
            for p in paths[i * bs:(i + 1) * bs]:
                im = Image.open(p).convert("RGB")
                w, h = im.size
                side = round(min(w, h) * spec.center_crop)
                left, top = (w - side) // 2, (h - side) // 2
                im = im.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
                images.append(np.asarray(im, np.float32))
            return pre(np.stack(images))

    seq = NaiveSequence()

    def per_batch_predict(batch):
        model.predict(batch, verbose=0)
        return len(batch)
    return _timed((seq[i] for i in range(len(seq))), per_batch_predict)


def _child(config_path: str | None, backbone: str, interim: Path, models: Path, frames: int, intra: int,
           inter: int) -> dict:
    """Measure a, b and c in this process."""
    from common.config import load_config
    from common.tensorflow_setup import setup, tf

    from extract.backbones import build_model, get_backbone, load_classifier
    from extract.features import crop_rows, inference_model
    from extract.settings import load_settings

    interim, models = Path(interim), Path(models)
    settings = load_settings(load_config(config_path))
    runtime = setup(settings.mixed_precision, intra, inter)
    spec = next(s for s in settings.backbones if s.name == backbone)
    model_file = models / f"{backbone}.keras"
    classifier = load_classifier(model_file) if model_file.exists() else build_model(backbone, spec.input_size)
    model = inference_model(classifier, runtime)
    pre = get_backbone(backbone).preprocess
    rows, videos, root = crop_rows(interim)
    rows = rows.iloc[:frames]
    paths = np.array([str(root / p) for p in rows["path"]])
    n, bs, size = len(paths), settings.batch_size, spec.input_size
    model_only = _model_only(model, runtime, pre, n, bs, size)
    pipeline = _pipeline(model, runtime, pre, rows, videos, paths, spec, settings.chunk_videos, bs)
    naive = _naive(model, pre, paths, spec, bs)
    return {"frames": n, "batch_size": bs, "input_size": size, "model_only_fps": round(model_only, 1),
            "pipeline_fps": round(pipeline, 1), "naive_fps": round(naive, 1),
            "pipeline_vs_model_only": round(pipeline / model_only, 3), "pipeline_vs_naive": round(pipeline / naive, 3),
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"), "intra_op_threads": intra,
            "inter_op_threads": inter, "tensorflow": tf.__version__, "runtime": runtime.describe()}


def run_bench(config: dict, settings, spec, interim: Path, models: Path, out: Path, frames: int) -> dict:
    """Run every TensorFlow setting in a child process; print a table and write ``out``."""
    if not (interim / "frames.parquet").exists():
        raise DataError(f"{interim}/frames.parquet: not found; run 'make data' first")
    results = {}
    for name, env, intra, inter in SETTINGS:
        cmd = [sys.executable, "-c", ("import json, sys; from bench.features import _child; from pathlib import Path; "
                                      "print('RESULT ' + json.dumps(_child(*json.loads(sys.argv[1]))))"),
               json.dumps([config["_source"], spec.name, str(interim), str(models), frames, intra, inter])]
        proc = subprocess.run(cmd, env={**os.environ, **env, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
                              capture_output=True, text=True, check=False)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise DataError(f"bench setting {name} failed: {last}")
        results[name] = json.loads(line[7:])
    best = max(results, key=lambda k: results[k]["pipeline_fps"])
    report = {"backbone": spec.name, "machine": platform.machine(), "cpus": os.cpu_count(), "settings": results,
              "best_setting": best,
              "targets": {"pipeline_vs_model_only >= 0.8": results[best]["pipeline_vs_model_only"] >= 0.8,
                          "pipeline_vs_naive >= 2": results[best]["pipeline_vs_naive"] >= 2}}
    header = f"{'setting':<15}{'a model-only':>14}{'b pipeline':>12}{'c naive':>10}{'b/a':>7}{'b/c':>7}"
    print(f"bench extract: {spec.name} at {spec.input_size}px, {results[best]['frames']} crops, "
          f"batch {results[best]['batch_size']} (frames/s)")
    print(header)
    for name, r in results.items():
        print(f"{name:<15}{r['model_only_fps']:>14.0f}{r['pipeline_fps']:>12.0f}{r['naive_fps']:>10.0f}"
              f"{r['pipeline_vs_model_only']:>7.2f}{r['pipeline_vs_naive']:>7.2f}")
    write_json(out, report)
    print(f"wrote {out}")
    return report


SUMMARY = re.compile(r"(\d+) crops in ([0-9.]+) s \((\d+) frames/s")


def _features_run(cmd: list[str], name: str) -> dict:
    """One ``extract features`` run as a user runs it: wall seconds and its summary line's numbers."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    wall = time.perf_counter() - start
    found = SUMMARY.search(proc.stdout)
    if proc.returncode != 0 or not found:
        last = (proc.stderr.strip().splitlines() or ["no summary line"])[-1]
        raise DataError(f"bench run {name} failed: {last}")
    crops, seconds = int(found[1]), float(found[2])
    return {"wall_s": round(wall, 2), "chunk_phase_s": seconds, "crops": crops,
            "frames_per_s": round(crops / seconds, 1), "wall_frames_per_s": round(crops / wall, 1)}


def run_dask_bench(config: dict, spec, interim: Path, models: Path, out: Path, workers: int) -> dict:
    """``extract features`` for ``spec`` here, then with ``--executor dask --scheduler local:<workers>``, each a
    fresh command into its own temporary folder; ``models`` without the model gets an untrained one of the same
    shape (inference costs the same). Prints a table and writes ``out``."""
    from extract.backbones import build_model
    from extract.train import save_model

    if not (interim / "frames.parquet").exists():
        raise DataError(f"{interim}/frames.parquet: not found; run 'make data' first")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not (models / f"{spec.name}.keras").exists():
            models = tmp / "models" / interim.name
            save_model(build_model(spec.name, spec.input_size), models / f"{spec.name}.keras")
        base = [sys.executable, "-m", "extract", "features", "--config", config["_source"], "--backbone", spec.name,
                "--name", interim.name, "--interim", str(interim.parent), "--models", str(models.parent)]
        dask_flags = ["--executor", "dask", "--scheduler", f"local:{workers}"]
        runs = {name: _features_run([*base, "--out", str(tmp / name), *flags], name)
                for name, flags in (("local", []), (f"dask_{workers}", dask_flags))}
    dask = runs[f"dask_{workers}"]
    report = {"backbone": spec.name, "input_size": spec.input_size, "machine": platform.machine(),
              "cpus": os.cpu_count(), "workers": workers, "crops": runs["local"]["crops"], **runs,
              "dask_vs_local_frames_per_s": round(dask["frames_per_s"] / runs["local"]["frames_per_s"], 3),
              "dask_vs_local_wall": round(dask["wall_s"] / runs["local"]["wall_s"], 3)}
    print(f"extract features: {spec.name}, {report['crops']} crops, local vs {workers} Dask workers on "
          f"{os.cpu_count()} CPUs")
    print(f"{'run':<10}{'wall s':>9}{'chunks s':>10}{'frames/s':>10}")
    for name, r in runs.items():
        print(f"{name:<10}{r['wall_s']:>9.1f}{r['chunk_phase_s']:>10.1f}{r['frames_per_s']:>10.1f}")
    print(f"dask/local: frames/s x{report['dask_vs_local_frames_per_s']}, wall x{report['dask_vs_local_wall']}")
    write_json(out, report)
    print(f"wrote {out}")
    return report
