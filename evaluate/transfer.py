"""``python -m evaluate transfer --models A --name B``: dataset B scored by the models of dataset A, nothing fitted
on B: the cross-dataset test of the whole pipeline.

Data flows one way, each step resumable or cheap to redo:

1. checks, before anything is written: A's backbones (whole model files), model cards and saved ensemble
   (``apply.models``), B's prepared tables with labelled FAKE and REAL videos, and no video of B (nor its
   original, nor its family) among the videos that trained A's models (``apply.dataset.open_dataset``);
2. the application layer (``apply.dataset``): the feature cache of B under A's backbones,
   ``data/features/B_from_A/<backbone>.parquet``, written in resumable chunks by the code of ``extract features``
   (each backbone's input view read from its model card), then
   ``data/predictions/B_from_A/videos.parquet``: one row per video of B (``video, split, label, fold, family,
   n_frames``, ``manipulation`` when B's metadata has a ``method`` column; ``split`` is B's own, ignored here),
   then one column per method of A: A's rules on A's backbones (``<backbone>/<rule>``) and every saved combiner
   (``blend/*``, ``stack/*``, ``stack/chosen`` = A's submitted method), as in A's own predictions table; and
   ``transfer.json`` (models, dataset, prior, submitted method, backbones);
3. here: ``reports/B_from_A/``: ``report.md`` with its figures, ``leaderboard.csv`` and ``metrics.json`` (the usual
   schema with ``"split": "all"``, ``"models": "A"``, ``n_videos`` = every labelled video of B), scored on one part,
   every labelled video of B whatever its split in B, with family-grouped bootstrap intervals over B's families.
   ``metrics.json`` is written last (the Make target).
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from apply.dataset import META_FILE, Dataset, open_dataset, score_dataset
from apply.models import load_models
from common.atomic import write_json, write_text
from common.cli import check_name
from common.errors import DataError
from common.executor import ExecutorSpec
from common.schema import read_json_object

from . import figures
from .metrics import KAGGLE_EPS, log_loss, roc_auc
from .predictions import load_predictions
from .report import (
    best_against_runner_up,
    leaderboard,
    metrics_json,
    part_section,
    summary_table,
    write_leaderboard,
)
from .settings import load_settings

PART = "all"                   # the one report part: every labelled video of B
LOCAL = ExecutorSpec()


def transfer_name(models: str, name: str) -> str:
    """The folder name of B scored by A's models: ``B_from_A``."""
    return f"{name}_from_{models}"


def check_transfer(models: str, name: str, interim_root: Path, models_root: Path) -> Dataset:
    """Every refusal of a transfer, in one line each, before anything is computed or written."""
    check_name(models)
    check_name(name)
    if models == name:
        raise DataError(f"--models {models} --name {name}: a transfer scores another dataset than the models' own "
                        f"(for {name}'s own test split: make report NAME={name})")
    dataset = open_dataset(load_models(models_root / models), name, interim_root)
    label = dataset.videos["label"]
    n_fake, n_real = int((label == 1).sum()), int((label == 0).sum())
    if not n_fake or not n_real:
        raise DataError(f"{dataset.interim / 'videos.parquet'}: {n_fake} FAKE and {n_real} REAL labelled videos; a "
                        "transfer is scored on labelled videos of both classes")
    return dataset


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
    section = part_section(PART, part, board, best_against_runner_up(part, board, n_boot, seed), figs, prior,
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
    dataset = check_transfer(models, name, interim_root, models_root)
    both = transfer_name(models, name)
    score_dataset(dataset, config, features_root / both, predictions_root / both, executor)
    out = reports_root / both
    metrics = transfer_report(config, predictions_root / both, out, predictions_root / models)
    return out, metrics, dataset.models.saved.best_method, time.perf_counter() - start
