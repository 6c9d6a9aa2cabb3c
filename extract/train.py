"""``python -m extract train``: train or fine-tune each configured backbone on the ``train`` split only.

A family-grouped fold of the train split (``val_fold``) is held out for early stopping and checkpoint choice;
blend and test videos are never read. The checkpoint kept, and early stopping, follow the ``monitor`` metric
(frame ROC AUC by default: the ensemble calibrates every member, so a member is worth what it ranks). Each
epoch's batches depend only on (seed, epoch), and the run keeps a checkpoint after every epoch, so a killed run
resumes where it stopped.

Outputs ``models/<NAME>/<backbone>.keras``, ``<backbone>.json`` (the model card) and ``training_videos.json``
(the train split's videos, originals and families: ``data.training_videos``).
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from common.atomic import write_json
from common.errors import DataError
from common.metrics import KAGGLE_EPS, balanced_log_loss, log_loss
from common.tensorflow_setup import Runtime, keras, setup, tf  # noqa: F401  (TensorFlow without its banner)
from data.sampling import SamplingPolicy
from data.tables import load_tables, load_videos
from data.training_videos import TrainingRecord

from .backbones import build_model, get_backbone, load_classifier, load_keras
from .card import ModelCard, card_path, model_path
from .pipeline import View, eval_dataset, load_images, train_dataset
from .runtime import infer
from .settings import MONITORS, BackboneSpec, ExtractSettings, TrainSettings

MIN_IMPROVEMENT = 1e-4          # a monitored value must beat the best by more than this to count as better
METRIC_NAMES = {"auc": "AUC", "balanced_log_loss": "balanced log-loss"}


def training_rows(interim: Path, train: TrainSettings) -> tuple[pd.DataFrame, pd.DataFrame, Path]:
    """Face crops of the labelled ``train`` split: (fit rows, validation rows, dataset root)."""
    videos, frames, root = load_tables(interim)
    pool = videos[(videos["split"] == "train") & videos["label"].notna()][["video", "label", "fold", "family"]]
    rows = frames.merge(pool, on="video", how="inner")
    if train.faces == "first":
        rows = rows[rows["face"] == 1]
    if train.frames_per_video:
        policy = SamplingPolicy("linspace", count=train.frames_per_video)
        keep = rows.groupby("video")["frame"].transform(
            lambda f: f.isin(policy.select_frames(np.unique(f.to_numpy()))))
        rows = rows[keep]
    rows = rows.sort_values(["video", "frame", "face"]).reset_index(drop=True)
    rows["label"] = rows["label"].astype(int)
    val = rows[rows["fold"] == train.val_fold]
    fit = rows[rows["fold"] != train.val_fold]
    for part, what in ((fit, "training"), (val, f"validation (fold {train.val_fold})")):
        if part["label"].nunique() < 2:
            raise DataError(f"{interim}/videos.parquet: the train split's {what} crops hold "
                            f"{part['label'].nunique()} class(es); need FAKE and REAL")
    return fit.reset_index(drop=True), val.reset_index(drop=True), root


def data_fingerprint(rows: pd.DataFrame, root: Path) -> str:
    """sha256 over (video, frame, face, path, label, file size) of the rows a model was trained on."""
    h = hashlib.sha256()
    for r in rows[["video", "frame", "face", "path", "label"]].itertuples(index=False):
        size = (root / r.path).stat().st_size if (root / r.path).exists() else -1
        h.update(f"{r.video}|{r.frame}|{r.face}|{r.path}|{r.label}|{size}\n".encode())
    return h.hexdigest()


def sample_weights(labels: np.ndarray, mode: str) -> np.ndarray:
    """Per-sample weights: n / (2 n_class) for "balanced", ones for "none"."""
    if mode == "none":
        return np.ones(len(labels), np.float32)
    counts = np.bincount(labels, minlength=2).astype(np.float64)
    return (len(labels) / (2 * counts))[labels].astype(np.float32)


def frame_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Frame-level Kaggle log-loss, class-balanced log-loss (mean of the REAL and FAKE halves) and ROC AUC."""
    p = np.clip(p.astype(np.float64), KAGGLE_EPS, 1 - KAGGLE_EPS)
    return {"log_loss": log_loss(y, p), "balanced_log_loss": balanced_log_loss(y, p),
            "auc": float(roc_auc_score(y, p))}


def reseed(model: keras.Model, seed: int) -> None:
    """Set every layer's random state (dropout, stochastic depth) from ``seed`` alone, so an epoch's
    randomness is the same whether the run went straight through or resumed from a checkpoint."""
    generators = [layer.seed_generator for layer in model._flatten_layers(include_self=False, recursive=True)
                  if getattr(layer, "seed_generator", None) is not None]
    for i, generator in enumerate(generators):
        generator.state.assign(np.array([seed, i], dtype=generator.state.dtype))


def predict_scores(model: keras.Model, paths: np.ndarray, view: View, preprocess, batch_size: int,
                   runtime: Runtime) -> np.ndarray:
    """P(FAKE) for each path, shape (n,); unreadable files get NaN."""
    out = np.full(len(paths), np.nan, np.float32)
    for idx, images in eval_dataset(paths, view, preprocess, batch_size):
        out[idx.numpy()] = np.asarray(infer(model, images, runtime), np.float32).reshape(-1)
    return out


def save_model(model: keras.Model, target: Path) -> None:
    """``model.save`` to a temporary ``.keras`` name, then rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".tmp-{target.stem}.{os.getpid()}.keras")
    try:
        model.save(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _run_key(spec: BackboneSpec, settings: ExtractSettings, fingerprint: str) -> str:
    # epochs and patience are left out, so a killed run can be resumed with more epochs; processes too (like the
    # thread pools, it only says how the run shares the machine)
    train = {k: v for k, v in settings.train.__dict__.items() if k not in ("epochs", "patience", "processes")}
    blob = json.dumps({"spec": spec.__dict__, "train": repr(train), "seed": settings.seed,
                       "data": fingerprint}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def learning_rate(train: TrainSettings, n_crops: int):
    """Adam's learning rate: constant, or a cosine decay to zero over all ``epochs`` (steps counted from the
    number of training crops), which settles the weights instead of ending on a noisy high-rate step."""
    if train.lr_schedule == "constant":
        return train.learning_rate
    steps = max(1, -(-n_crops // train.batch_size)) * train.epochs
    return keras.optimizers.schedules.CosineDecay(train.learning_rate, decay_steps=steps)


def improves(value: float, best: float | None, monitor: str) -> bool:
    """Whether a validation value of the ``monitor`` metric beats the best so far (higher AUC, lower log-loss)."""
    if best is None:
        return True
    return value > best + MIN_IMPROVEMENT if MONITORS[monitor] else value < best - MIN_IMPROVEMENT


def _resume(work: Path, key: str, monitor: str) -> dict:
    """The training state of an interrupted run with this key and monitor, or a fresh one (its folder emptied)."""
    state_file = work / "state.json"
    state = None
    if state_file.exists():
        try:
            state = json.loads(state_file.read_text())
        except ValueError:
            state = None
    if not isinstance(state, dict) or state.get("key") != key or state.get("monitor") != monitor:
        shutil.rmtree(work, ignore_errors=True)
        state = {"key": key, "monitor": monitor, "epoch": 0, "best": None, "best_epoch": None, "wait": 0,
                 "history": [], "seconds": 0.0}
    return state


def _model(spec: BackboneSpec, train: TrainSettings, state: dict, work: Path, runtime: Runtime, n_crops: int
           ) -> keras.Model:
    """The compiled model: the checkpoint of the last finished epoch (safe mode), or a new one."""
    with runtime.strategy.scope():
        if state["epoch"] > 0:
            model = load_keras(work / state["checkpoint"], compile=True)
            print(f"{spec.name}: resuming after epoch {state['epoch']}")
            return model
        model = build_model(spec.name, spec.input_size, spec.weights, train.dropout)
        model.compile(optimizer=keras.optimizers.Adam(learning_rate(train, n_crops)), loss="binary_crossentropy")
        return model


def _training_source(spec: BackboneSpec, settings: ExtractSettings, fit: pd.DataFrame, root: Path):
    """(decoded images or paths, labels, sample weights) of the readable training crops. Every crop is decoded
    once: into memory when they fit in ``cache_mb``, else only to find the unreadable ones."""
    paths = np.array([str(root / p) for p in fit["path"]])
    cache = (len(fit) * spec.input_size**2 * 3) / 2**20 <= settings.train.cache_mb
    images, readable = load_images(paths, spec.view, settings.batch_size, keep=cache)
    for path in paths[~readable]:
        print(f"warning: unreadable training crop skipped: {path}", file=sys.stderr)
    y = fit["label"].to_numpy()[readable]
    return (images[readable] if cache else paths[readable]), y, sample_weights(y, settings.train.class_weight)


def _validate(model: keras.Model, spec: BackboneSpec, val: pd.DataFrame, root: Path, batch_size: int,
              runtime: Runtime) -> dict[str, float]:
    """Frame metrics of the readable validation crops."""
    paths = np.array([str(root / p) for p in val["path"]])
    y = val["label"].to_numpy()
    scores = predict_scores(model, paths, spec.view, get_backbone(spec.name).preprocess, batch_size, runtime)
    ok = ~np.isnan(scores)
    if not ok.all():
        print(f"warning: {int((~ok).sum())} unreadable validation crops skipped, e.g. {paths[~ok][0]}",
              file=sys.stderr)
    if len(np.unique(y[ok])) < 2:
        raise DataError(f"{spec.name}: the readable validation crops hold one class only")
    return frame_metrics(y[ok], scores[ok])


def _fit_epoch(model: keras.Model, spec: BackboneSpec, settings: ExtractSettings, source, epoch: int) -> float:
    """One epoch whose batches and randomness depend only on (seed, epoch); returns the training loss."""
    keras.utils.set_random_seed(settings.seed * 1000 + epoch)
    reseed(model, settings.seed * 1000 + epoch)
    images, y, weights = source
    ds = train_dataset(images, y, weights, spec.view, get_backbone(spec.name).preprocess, settings.train.batch_size,
                       settings.seed, epoch, settings.train.augment)
    with warnings.catch_warnings():
        # one tf.data epoch per fit call, shuffled by us and of unknown length after ignore_errors
        warnings.filterwarnings("ignore", message=".*(shuffle=True|ran out of data).*")
        history = model.fit(ds, epochs=epoch + 1, initial_epoch=epoch, verbose=1 if sys.stdout.isatty() else 2)
    return float(history.history["loss"][-1])


def _checkpoint(model: keras.Model, work: Path, state: dict, metrics: dict, loss: float, seconds: float) -> bool:
    """Record an epoch: history, best weights when the monitored validation metric improved, the model and then
    the state that names it (a kill between the two writes leaves the previous, consistent pair). Returns whether
    it improved."""
    epoch = state["epoch"]
    work.mkdir(parents=True, exist_ok=True)        # made by the first checkpoint, so a failed start leaves none
    state["history"].append({"epoch": epoch + 1, "loss": loss, **{f"val_{k}": v for k, v in metrics.items()},
                             "seconds": round(seconds, 2)})
    state["seconds"] += seconds
    monitor = state["monitor"]
    improved = improves(metrics[monitor], state["best"], monitor)
    if improved:
        state.update(best=metrics[monitor], best_epoch=epoch + 1, wait=0)
        model.save_weights(work / ".best.weights.h5")
        os.replace(work / ".best.weights.h5", work / "best.weights.h5")
    else:
        state["wait"] += 1
    state["epoch"] = epoch + 1
    state["checkpoint"] = f"epoch-{epoch + 1:03d}.keras"
    save_model(model, work / state["checkpoint"])
    write_json(work / "state.json", state)
    for old in work.glob("epoch-*.keras"):
        if old.name != state["checkpoint"]:
            old.unlink()
    return improved


def _card(spec: BackboneSpec, settings: ExtractSettings, config: dict, state: dict, done_key: str,
          fingerprint: str, fit: pd.DataFrame, val: pd.DataFrame, fit_y: np.ndarray) -> ModelCard:
    best = state["history"][state["best_epoch"] - 1]
    return ModelCard(
        backbone=spec.name, run_key=done_key, input_size=spec.input_size,
        center_crop=spec.center_crop, weights=spec.weights,
        model_file=model_path(Path(), spec.name).name,
        config={"extract": config["extract"], "backbone": config["backbones"][spec.name], "seed": settings.seed},
        data={"fingerprint": fingerprint, "train_crops": len(fit), "train_videos": int(fit["video"].nunique()),
              "val_crops": len(val), "val_videos": int(val["video"].nunique()),
              "val_fold": settings.train.val_fold, "fake_share": float(fit_y.mean())},
        epochs_run=state["epoch"], best_epoch=state["best_epoch"], monitor=state["monitor"],
        val={k[4:]: v for k, v in best.items() if k.startswith("val_")},
        history=state["history"], train_seconds=round(state["seconds"], 1),
        tensorflow=tf.__version__, keras=keras.__version__,
        # what the weights' last bits depend on besides the seed: the intra-op pool (0 = one thread per core)
        # and oneDNN's kernels, chosen per CPU instruction set
        cpu={"cores": len(os.sched_getaffinity(0)), "intra_op_threads": settings.intra_op_threads,
             "inter_op_threads": settings.inter_op_threads,
             **{k.lower(): os.environ[k] for k in ("TF_ENABLE_ONEDNN_OPTS", "ONEDNN_MAX_CPU_ISA")
                if k in os.environ}},
    )


def _up_to_date(models_dir: Path, name: str, done_key: str) -> ModelCard | None:
    """The card of a finished run with this key, beside its model; None when there is none (or it is damaged:
    the backbone is trained again)."""
    card_file = card_path(models_dir, name)
    if not card_file.exists() or not model_path(models_dir, name).exists():
        return None
    try:
        card = ModelCard.read(card_file, "")
    except DataError:
        return None
    return card if card.run_key == done_key else None


def train_backbone(spec: BackboneSpec, settings: ExtractSettings, fit: pd.DataFrame, val: pd.DataFrame,
                   root: Path, models_dir: Path, config: dict) -> ModelCard:
    """Train one backbone with per-epoch checkpoints (resumed after a kill); returns its model card."""
    train = settings.train
    fingerprint = data_fingerprint(pd.concat([fit, val]), root)
    key = _run_key(spec, settings, fingerprint)
    done_key = hashlib.sha256(f"{key}|{train.epochs}|{train.patience}".encode()).hexdigest()
    card = _up_to_date(models_dir, spec.name, done_key)
    if card is not None:
        print(f"{spec.name}: {model_path(models_dir, spec.name)} is up to date")
        return card
    work = models_dir / f".train-{spec.name}"
    state = _resume(work, key, train.monitor)
    runtime = setup(settings.mixed_precision, settings.intra_op_threads, settings.inter_op_threads,
                    seed=settings.seed, deterministic=True)
    model = _model(spec, train, state, work, runtime, len(fit))
    source = _training_source(spec, settings, fit, root)
    print(f"{spec.name}: {len(fit)} training crops ({fit['video'].nunique()} videos), {len(val)} validation crops "
          f"({val['video'].nunique()} videos), input {spec.input_size}px (centre {spec.center_crop:g}), "
          f"weights {spec.weights}, {runtime.describe()}; the epoch with the best validation frame "
          f"{METRIC_NAMES[train.monitor]} is kept")
    while state["epoch"] < train.epochs and state["wait"] < train.patience:
        start = time.perf_counter()
        loss = _fit_epoch(model, spec, settings, source, state["epoch"])
        metrics = _validate(model, spec, val, root, settings.batch_size, runtime)
        improved = _checkpoint(model, work, state, metrics, loss, time.perf_counter() - start)
        print(f"{spec.name}: epoch {state['epoch']}: val AUC {metrics['auc']:.4f}, balanced log-loss "
              f"{metrics['balanced_log_loss']:.4f}{f' (best {METRIC_NAMES[train.monitor]})' if improved else ''}, "
              f"{state['history'][-1]['seconds']:.1f} s")

    model.load_weights(work / "best.weights.h5")
    card = _card(spec, settings, config, state, done_key, fingerprint, fit, val, source[1])
    save_model(model, model_path(models_dir, spec.name))
    write_json(card_path(models_dir, spec.name), card.to_json())
    load_classifier(model_path(models_dir, spec.name))   # the saved file must load in safe mode
    shutil.rmtree(work, ignore_errors=True)
    return card


def train_all(interim: Path, models_dir: Path, settings: ExtractSettings, config: dict,
              only: list[str] | None = None) -> list[ModelCard]:
    """Train every backbone of ``settings`` (or of ``only``); returns their cards in config order. With
    ``[extract.train] processes`` > 1, that many backbones train at once, each in its own spawned process with
    ``intra_op_threads`` (when 0: the cores shared out) and one inter-op thread."""
    fit, val, root = training_rows(interim, settings.train)
    specs = [spec for spec in settings.backbones if not only or spec.name in only]
    processes = min(settings.train.processes, len(specs))
    if processes <= 1:
        cards = [train_backbone(spec, settings, fit, val, root, models_dir, config) for spec in specs]
    else:
        threads = settings.intra_op_threads or max(1, len(os.sched_getaffinity(0)) // processes)
        shared = replace(settings, intra_op_threads=threads, inter_op_threads=1)
        with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(train_backbone, spec, shared, fit, val, root, models_dir, config) for spec in specs]
            cards = [f.result() for f in futures]
    # rewritten on every run, an up-to-date one too, so models trained before the record gain it by a rerun
    TrainingRecord.of(load_videos(interim), "train", interim / "videos.parquet").write(models_dir)
    for spec, card in zip(specs, cards):
        print(f"{spec.name}: best epoch {card.best_epoch}/{card.epochs_run} by validation frame "
              f"{METRIC_NAMES[card.monitor]}, validation frame AUC "
              f"{card.val['auc']:.4f}, balanced log-loss {card.val['balanced_log_loss']:.4f}; "
              f"wrote {models_dir / spec.name}.keras")
    return cards
