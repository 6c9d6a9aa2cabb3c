"""``python -m evaluate transfer --models A --name B``: dataset B scored by the models of dataset A, nothing fitted
on B: the cross-dataset test of the whole pipeline.

Data flows one way, each step resumable or cheap to redo:

1. checks, before anything is written: A's backbones, model cards and saved ensemble, B's prepared tables with
   labelled FAKE and REAL videos, and no video of B (nor its original, nor its family) among the videos that
   trained A's models (``data.training_videos``: A's train split for the backbones, its blend split for the
   ensemble);
2. the feature cache of B under A's backbones, ``data/features/B_from_A/<backbone>.parquet``, written in resumable
   chunks by the code of ``extract features`` (each backbone's input view read from its model card);
3. ``data/predictions/B_from_A/videos.parquet``: one row per video of B (``video, split, label, fold, family,
   n_frames``, ``manipulation`` when B's metadata has a ``method`` column; ``split`` is B's own, ignored here),
   then one column per method of A: A's rules on A's backbones (``<backbone>/<rule>``) and every saved combiner
   (``blend/*``, ``stack/*``, ``stack/chosen`` = A's submitted method), as in A's own predictions table; and
   ``transfer.json`` (models, dataset, prior, submitted method, backbones);
4. ``reports/B_from_A/``: ``report.md`` with its figures, ``leaderboard.csv`` and ``metrics.json`` (the usual
   schema with ``"split": "all"``, ``"models": "A"``, ``n_videos`` = every labelled video of B), scored on one part,
   every labelled video of B whatever its split in B, with family-grouped bootstrap intervals over B's families.
   ``metrics.json`` is written last (the Make target).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from common.atomic import atomic_dir, write_json, write_text
from common.cli import check_name
from common.errors import DataError
from common.executor import ExecutorSpec
from common.schema import read_json_object
from data.tables import load_videos
from data.training_videos import RECORD_FILE, known_names, read_record, refuse_overlap
from ensemble.fit import MANIPULATION, META
from ensemble.saved import SavedEnsemble
from extract.cache import check_features

from . import figures
from .metrics import KAGGLE_EPS, log_loss, roc_auc
from .predictions import load_predictions
from .report import (
    _paired,
    _part_section,
    leaderboard,
    metrics_json,
    summary_table,
    write_leaderboard,
)
from .settings import load_settings

PART = "all"                   # the one report part: every labelled video of B
META_FILE = "transfer.json"
LOCAL = ExecutorSpec()
VIDEOS_PER_BATCH = 4096        # videos whose frames (every backbone's rows and embeddings) are in memory at a time


def transfer_name(models: str, name: str) -> str:
    """The folder name of B scored by A's models: ``B_from_A``."""
    return f"{name}_from_{models}"


@dataclass
class Transfer:
    """What a transfer reads, checked: A's models folder, saved ensemble and backbone views, and B's videos."""

    models: str
    name: str
    models_dir: Path
    saved: SavedEnsemble
    views: list[tuple]         # (backbone, input_size, weights, center_crop) of each backbone, from its model card
    interim: Path
    videos: pd.DataFrame       # B's videos table, one row per video


def refit_hint(models: str) -> str:
    return (f"refit A's models: python -m extract train --name {models} (quick when up to date), then "
            f"python -m ensemble fit --name {models}")


def _view(models_dir: Path, backbone: str, hint: str) -> tuple:
    """(backbone, input_size, weights, center_crop): the input view a backbone was trained with, from its card
    (read without TensorFlow, so that a refusal stays quick)."""
    model, card_file = models_dir / f"{backbone}.keras", models_dir / f"{backbone}.json"
    if not model.exists():
        raise DataError(f"{model}: backbone {backbone!r} of the saved ensemble not found; {hint}")
    card = read_json_object(card_file, hint)
    size, crop = card.get("input_size"), card.get("center_crop")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1 or \
            not isinstance(crop, (int, float)) or isinstance(crop, bool) or not 0 < crop <= 1:
        raise DataError(f"{card_file}: input_size = {size!r}, center_crop = {crop!r}: not a model card; {hint}")
    return backbone, size, str(card.get("weights", "none")), float(crop)


def check_transfer(models: str, name: str, interim_root: Path, models_root: Path) -> Transfer:
    """Every refusal of a transfer, in one line each, before anything is computed or written."""
    check_name(models)
    check_name(name)
    if models == name:
        raise DataError(f"--models {models} --name {name}: a transfer scores another dataset than the models' own "
                        f"(for {name}'s own test split: make report NAME={name})")
    models_dir = models_root / models
    hint = f"run 'make ensemble NAME={models}' first"
    if not models_dir.is_dir():
        raise DataError(f"{models_dir}: no models of dataset {models!r}; {hint}")
    saved = SavedEnsemble(models_dir / "ensemble")
    views = [_view(models_dir, b, hint) for b in saved.backbones]
    interim = interim_root / name
    videos = load_videos(interim)
    path = interim / "videos.parquet"
    label = videos["label"]
    n_fake, n_real = int((label == 1).sum()), int((label == 0).sum())
    if not n_fake or not n_real:
        raise DataError(f"{path}: {n_fake} FAKE and {n_real} REAL labelled videos; a transfer is scored on labelled "
                        "videos of both classes")
    records = [read_record(models_dir / RECORD_FILE, refit_hint(models)),
               read_record(models_dir / "ensemble" / RECORD_FILE, refit_hint(models))]
    refuse_overlap(path, videos, known_names(records), f"{models_dir} (its {' and '.join(r['split'] for r in records)}"
                                                       " splits)")
    return Transfer(models, name, models_dir, saved, views, interim, videos)


def extract_features(t: Transfer, config: dict, features_dir: Path, executor: ExecutorSpec) -> dict[str, Path]:
    """Every backbone of A over every crop of B, into ``features_dir`` (resumable chunks, then one file each)."""
    from extract.features import Shard, extract_backbone
    from extract.settings import BackboneSpec
    from extract.settings import load_settings as extract_settings

    settings = extract_settings(config)
    files = {}
    with executor.open() as ex:
        for view in t.views:
            spec = BackboneSpec(*view)
            files[spec.name] = extract_backbone(spec, settings, t.interim, t.models_dir, features_dir, Shard(0, 1),
                                                ex)
    return files


def read_frames(path: Path, names: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows of ``names`` in a feature file: (video, frame, face, score table (n rows), embeddings (n, D)),
    checked (errors name the file; a row number counts rows of these videos only)."""
    return check_features(path, pq.read_table(path, filters=[("video", "in", names)]))


def predict_videos(t: Transfer, files: dict[str, Path]) -> pd.DataFrame:
    """One row per video of B, sorted by video: the metadata columns, then every method of A's saved ensemble."""
    videos = t.videos.sort_values("video").reset_index(drop=True)
    out = videos[META].copy()
    if MANIPULATION in videos:
        out["manipulation"] = videos[MANIPULATION].to_numpy()
    names, methods, parts = videos["video"].tolist(), t.saved.methods(), []
    for start in range(0, len(names), VIDEOS_PER_BATCH):
        batch = names[start:start + VIDEOS_PER_BATCH]
        frames = {b: read_frames(files[b], batch) for b in t.saved.backbones}
        parts.append(t.saved.predict_many(batch, frames, methods))
    return pd.concat([out, pd.concat(parts, ignore_index=True)], axis=1)


def write_predictions(t: Transfer, table: pd.DataFrame, files: dict[str, Path], out: Path) -> None:
    """``out/videos.parquet`` and ``out/transfer.json``, the folder replaced whole."""
    meta = {"models": t.models, "dataset": t.name, "prior": t.saved.prior, "best_method": t.saved.best_method,
            "backbones": t.saved.backbones, "features": {b: str(p) for b, p in files.items()},
            "n_videos": len(table), "n_labelled": int(table["label"].notna().sum())}
    with atomic_dir(out) as tmp:
        table.to_parquet(tmp / "videos.parquet", index=False)
        write_json(tmp / META_FILE, meta)


def _own_test(own: Path) -> pd.DataFrame | None:
    """The labelled test split of A's own predictions table, or None where there is none."""
    if not (own / "videos.parquet").exists():
        return None
    table, _, _ = load_predictions(own)
    test = table[(table["split"] == "test") & table["label"].notna()]
    return test if test["label"].nunique() == 2 else None


def _fmt(x: float) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.4f}"


def gap_table(board: pd.DataFrame, test: pd.DataFrame, methods: list[str], models: str) -> str:
    """Each method's log-loss and AUC on the test split of ``models`` (A) beside its figures here (B's
    leaderboard ``board``), in the leaderboard's order."""
    lines = [f"| method | log-loss on `{models}` test | log-loss here | change | AUC on `{models}` test | AUC here |",
             "|---|---|---|---|---|---|"]
    y = test["label"].to_numpy(np.float64)
    for m, r in board.iterrows():
        if m not in methods:
            continue
        own = log_loss(y, test[m].to_numpy(np.float64))
        lines.append(f"| `{m}` | {_fmt(own)} | {_fmt(r.log_loss)} | {r.log_loss - own:+.4f} | "
                     f"{_fmt(roc_auc(y, test[m].to_numpy(np.float64)))} | {_fmt(r.auc)} |")
    return "\n".join(lines)


def transfer_report(config: dict, folder: Path, out: Path, own: Path | None = None) -> dict:
    """``out/report.md`` with its figures, ``leaderboard.csv`` and ``metrics.json`` (written last) of the
    predictions in ``folder``; ``own``: A's own predictions folder, for the figures on A's test split. Returns
    the metrics."""
    settings = load_settings(config)
    n_boot, top, bins, seed = settings.bootstrap, settings.top_methods, settings.ece_bins, settings.seed
    table, methods, _ = load_predictions(folder)
    meta = read_json_object(folder / META_FILE, "run 'python -m evaluate transfer' first")
    models, name, prior, submitted = meta.get("models"), meta.get("dataset"), meta.get("prior"), meta.get("best_method")
    part = table[table["label"].notna()]
    if part["label"].nunique() < 2:
        raise DataError(f"{folder / 'videos.parquet'}: no labelled videos of both classes to score")
    board = leaderboard(part, methods, n_boot, seed, bins)
    out.mkdir(parents=True, exist_ok=True)
    figs = figures.draw_all(part, board, methods, out, PART, top, bins)
    section = _part_section(PART, part, board, _paired(part, board, n_boot, seed), figs, prior,
                            title=f"every labelled video of `{name}`, whatever its split there",
                            prior_source=f"the FAKE share of `{models}`'s blend split, the models' prior")
    test = _own_test(own) if own is not None else None
    gap = [f"## Against `{models}`'s own test split", "",
           (f"Each method on the test split of `{models}` (the data its models were made for; its own report) and "
            f"here, in this leaderboard's order; change = here − there. What a method loses here is what its "
            f"figure on `{models}` promised and `{name}` did not keep."),
           "", gap_table(board, test, methods, models), ""] if test is not None else []
    lines = [f"# Transfer report: the models of `{models}` on `{name}`", "",
             (f"Every video of `{name}` scored by the backbones and the saved ensemble of `{models}`: nothing was "
              f"trained, fitted, calibrated or chosen on `{name}` (its splits are ignored; none of its videos, "
              f"originals or families is among those that trained `{models}`'s models). The submitted method is "
              f"`{models}`'s, **`{submitted}`**, chosen on `{models}`'s blend split. Methods are named as in "
              f"`{models}`'s own report: `<backbone>/<rule>`, `blend/<name>`, `stack/<name>`."), "",
             ("Per-video P(FAKE) scored like the Kaggle Deepfake Detection Challenge: log-loss with the natural log, "
              f"predictions clipped to [{KAGGLE_EPS:g}, 1 − {KAGGLE_EPS:g}]; lower is better. 95 % intervals: "
              f"{n_boot} bootstrap resamples of whole families of `{name}`. Balanced log-loss is the mean of the "
              f"FAKE and REAL halves; ECE over {bins} equal-width bins; accuracy at P(FAKE) > 0.5."), "",
             "## Data", "", summary_table(table), "", *section, *gap]
    write_text(out / "report.md", "\n".join(lines) + "\n")
    write_leaderboard({PART: board}, out / "leaderboard.csv")
    metrics = {**metrics_json(name, PART, part, board), "models": models}
    write_json(out / "metrics.json", metrics)
    return metrics


def run_transfer(config: dict, models: str, name: str, interim_root: Path, models_root: Path, features_root: Path,
                 predictions_root: Path, reports_root: Path, executor: ExecutorSpec = LOCAL
                 ) -> tuple[Path, dict, str, float]:
    """The whole transfer (module docstring); returns the report folder, its metrics, the submitted method (A's
    choice) and the seconds taken."""
    start = time.perf_counter()
    t = check_transfer(models, name, interim_root, models_root)
    both = transfer_name(models, name)
    files = extract_features(t, config, features_root / both, executor)
    table = predict_videos(t, files)
    write_predictions(t, table, files, predictions_root / both)
    out = reports_root / both
    metrics = transfer_report(config, predictions_root / both, out, predictions_root / models)
    return out, metrics, t.saved.best_method, time.perf_counter() - start
