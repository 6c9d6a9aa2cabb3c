"""``python -m evaluate report``: the log-loss leaderboard, metrics and figures of one dataset's predictions.

Reads ``data/predictions/<NAME>/videos.parquet`` (``video, split, label, fold, family, n_frames``, optional
``manipulation``, then one ``<a>/<b>`` column per method) and ``fit.json`` beside it. Two parts, never mixed:
the labelled ``test`` split, and the ``blend`` split's out-of-fold predictions. Intervals come from a
family-grouped bootstrap. Writes ``reports/<NAME>/report.md`` with its figures, ``leaderboard.csv``,
``metrics.json`` (test) and ``metrics_blend_oof.json`` (blend OOF); where ``ensemble protocols`` has run, also
``frame_budget.csv``, ``ablation.csv`` and their figures (``evaluate.protocols``). Each file is written to a
temporary name and renamed, ``metrics.json`` last (the Make target), so a killed run is redone by the next
``make report``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from common.atomic import atomic_path, staged_files, write_json, write_text

from . import figures
from .metrics import (
    KAGGLE_EPS,
    all_metrics,
    bootstrap_ci,
    grouped_bootstrap_indices,
    log_loss,
    paired_bootstrap,
    roc_auc,
)
from .predictions import load_predictions
from .protocols import protocol_sections
from .settings import load_settings

PARTS = {"test": "test split", "blend": "blend split, out-of-fold"}
METRIC_COLUMNS = ["log_loss", "log_loss_ci", "auc", "auc_ci", "balanced_log_loss", "ap", "eer", "brier", "ece",
                  "accuracy", "precision", "recall", "specificity"]


def leaderboard(part: pd.DataFrame, methods: list[str], n_boot: int, seed: int, bins: int) -> pd.DataFrame:
    """One row per method, sorted by log-loss: every metric and 95 % family-bootstrap intervals."""
    y = part["label"].to_numpy(np.float64)
    groups = part["family"].to_numpy()
    indices = grouped_bootstrap_indices(groups, n_boot, seed)
    rows = []
    for m in methods:
        p = part[m].to_numpy(np.float64)
        metrics = all_metrics(y, p, bins=bins)
        rows.append({"method": m, **metrics,
                     "log_loss_ci": list(bootstrap_ci(y, p, groups, log_loss, indices=indices)),
                     "auc_ci": list(bootstrap_ci(y, p, groups, roc_auc, indices=indices))})
    board = pd.DataFrame(rows).set_index("method")[METRIC_COLUMNS]
    return board.sort_values("log_loss", kind="stable")


def write_leaderboard(boards: dict[str, pd.DataFrame], target: Path) -> None:
    """``leaderboard.csv``: every part's board one under the other with a ``split`` column, each interval as
    ``<metric>_ci_low`` and ``<metric>_ci_high``."""
    csv = pd.concat([b.assign(split=k).reset_index() for k, b in boards.items()]) if boards else pd.DataFrame()
    for col in ("log_loss_ci", "auc_ci"):
        if col in csv:
            csv[[f"{col}_low", f"{col}_high"]] = pd.DataFrame(csv.pop(col).tolist(), index=csv.index)
    with atomic_path(target) as tmp:
        csv.to_csv(tmp, index=False)


def _fmt(x: float, digits: int = 4) -> str:
    return "–" if x is None or x != x else f"{x:.{digits}f}"


def _ci(ci) -> str:
    return f"[{_fmt(ci[0], 3)}, {_fmt(ci[1], 3)}]"


def markdown_table(board: pd.DataFrame, top: int | None = None) -> str:
    rows = board if top is None else board.head(top)
    lines = ["| # | method | log-loss | 95 % CI | balanced | AUC | 95 % CI | AP | EER | Brier | ECE | acc |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for i, (m, r) in enumerate(rows.iterrows(), 1):
        lines.append(f"| {i} | `{m}` | {_fmt(r.log_loss)} | {_ci(r.log_loss_ci)} | {_fmt(r.balanced_log_loss)} | "
                     f"{_fmt(r.auc, 3)} | {_ci(r.auc_ci)} | {_fmt(r.ap, 3)} | {_fmt(r.eer, 3)} | {_fmt(r.brier)} | "
                     f"{_fmt(r.ece, 3)} | {_fmt(r.accuracy, 3)} |")
    return "\n".join(lines)


def summary_table(table: pd.DataFrame) -> str:
    """Videos, class balance, families and frames per video, by split."""
    lines = ["| split | videos | FAKE | REAL | unlabelled | FAKE share | families | frames/video (min–median–max) | "
             "no face |", "|---|---|---|---|---|---|---|---|---|"]
    for split, g in table.groupby("split", sort=False):
        n_fake, n_real = int((g["label"] == 1).sum()), int((g["label"] == 0).sum())
        share = n_fake / (n_fake + n_real) if n_fake + n_real else float("nan")
        f = g["n_frames"] if "n_frames" in g else pd.Series(dtype=float)
        frames = f"{int(f.min())}–{int(f.median())}–{int(f.max())}" if len(f) else "–"
        lines.append(f"| {split} | {len(g)} | {n_fake} | {n_real} | {int(g['label'].isna().sum())} | "
                     f"{_fmt(share, 3)} | {g['family'].nunique()} | {frames} | {int((f == 0).sum())} |")
    return "\n".join(lines)


def metrics_json(name: str, split: str, part: pd.DataFrame, board: pd.DataFrame) -> dict:
    def clean(v):
        return None if isinstance(v, float) and v != v else v

    methods = {m: {k: ([clean(x) for x in v] if isinstance(v, list) else clean(float(v)))
                   for k, v in r.items() if k != "auc_ci"} for m, r in board.to_dict("index").items()}
    return {"dataset": name, "split": split, "n_videos": int(len(part)), "epsilon": KAGGLE_EPS,
            "methods": methods, "best_method": board.index[0] if len(board) else None}


def best_against_runner_up(part: pd.DataFrame, board: pd.DataFrame, n_boot: int, seed: int) -> dict | None:
    """The best method against the runner-up: the next method whose predictions differ (``stack/chosen`` holds the
    chosen method's values on test rows, and a tie of one method with itself says nothing)."""
    best = board.index[0] if len(board) else None
    others = [m for m in board.index[1:] if not np.array_equal(part[m].to_numpy(), part[best].to_numpy())]
    if not others:
        return None
    second = others[0]
    y = part["label"].to_numpy(np.float64)
    result = paired_bootstrap(y, part[best].to_numpy(np.float64), part[second].to_numpy(np.float64),
                              part["family"].to_numpy(), log_loss, n_boot=n_boot, seed=seed)
    return {"best": best, "runner_up": second, **result}


def part_section(key: str, part: pd.DataFrame, board: pd.DataFrame, paired: dict | None, figs: dict,
                 prior: float | None, title: str | None = None,
                 prior_source: str = "the blend split's FAKE share") -> list[str]:
    """The report's Markdown lines for one part (``key``: its figure prefix; ``title``: its heading, by default
    the part's name): counts, the leaderboard ``board``, the paired comparison of the best method (from
    :func:`best_against_runner_up`), the figures ``figs`` and the constant ``prior``'s log-loss."""
    title = title or PARTS[key]
    n_fake = int(part["label"].sum())
    lines = [f"## {title[0].upper()}{title[1:]}: {len(part)} videos ({n_fake} FAKE, {len(part) - n_fake} REAL, "
             f"{part['family'].nunique()} families)", ""]
    if prior is not None:
        constant = log_loss(part["label"].to_numpy(), np.full(len(part), prior))
        lines += [f"Reference: the constant P(FAKE) = {prior:.3f} ({prior_source}) scores "
                  f"{constant:.4f} here; a method must beat that to be worth anything.", ""]
    if paired:
        lo, hi = paired["ci"]
        lines += [f"Best: **`{paired['best']}`**, log-loss {_fmt(board.iloc[0].log_loss)} "
                  f"(95 % CI {_ci(board.iloc[0].log_loss_ci)}). Runner-up (the next method with other predictions) "
                  f"`{paired['runner_up']}`: {_fmt(board.loc[paired['runner_up']].log_loss)}. Paired bootstrap of "
                  "the difference (best − runner-up): "
                  f"{paired['diff']:+.4f}, 95 % CI [{lo:+.4f}, {hi:+.4f}]"
                  + (" — the gap is within the noise." if lo <= 0 <= hi else " — the gap is larger than the noise."),
                  ""]
    lines += [markdown_table(board), ""]
    captions = {
        "roc": "ROC curves of the top methods (AUC in the legend).",
        "reliability": "Reliability diagram: mean prediction against the FAKE share per bin; the diagonal is "
                       "perfect calibration, marker size is the bin's video count.",
        "histogram": "Predicted P(FAKE) of the best method, by true class.",
        "heatmap": "Log-loss of every aggregation rule (rows) on every backbone (columns), before any stacking.",
        "manipulation": "Log-loss by manipulation method for the top methods: FAKE videos of each method, and the "
                        "REAL videos.",
    }
    for kind, file in figs.items():
        lines += [f"![{kind}]({file})", "", f"*{captions[kind]}*", ""]
    return lines


def run_report(config: dict, predictions: Path, out: Path, name: str) -> Path:
    settings = load_settings(config)
    table, methods, fit = load_predictions(predictions)
    with staged_files(out) as stage:      # a failed report leaves no folder, and no file of it half-updated
        _write_report(settings, table, methods, fit, predictions, stage, name)
    return out


def _write_report(settings, table: pd.DataFrame, methods: list[str], fit: dict, predictions: Path, out: Path,
                  name: str) -> None:
    n_boot, top, bins, seed = settings.bootstrap, settings.top_methods, settings.ece_bins, settings.seed
    protocols = protocol_sections(predictions, out, n_boot, seed)      # first: its inputs are checked before any
    boards, paired, jsons, sections = {}, {}, {}, []                   # figure of this report is written
    for key in PARTS:
        part = table[(table["split"] == key) & table["label"].notna()]
        if part["label"].nunique() < 2:
            sections += [f"## {PARTS[key][0].upper()}{PARTS[key][1:]}", "",
                         "No labelled videos of both classes here: nothing to score.", ""]
            jsons[key] = {"dataset": name, "split": key, "n_videos": int(len(part)), "epsilon": KAGGLE_EPS,
                          "methods": {}, "best_method": None}
            continue
        board = leaderboard(part, methods, n_boot, seed, bins)
        boards[key], paired[key] = board, best_against_runner_up(part, board, n_boot, seed)
        jsons[key] = metrics_json(name, key, part, board)
        figs = figures.draw_all(part, board, methods, out, key, top, bins)
        sections += part_section(key, part, board, paired[key], figs, fit.prior if fit else None)

    chosen = fit.best_method if fit else None
    nested = fit.chosen if fit else None
    if nested is not None and nested.nested_oof_log_loss is not None:
        chosen_text = (f" The method chosen that way is **`{nested.method}`**, submitted as `{chosen}`. On the "
                       "blend "
                       f"split, `{chosen}` holds the *nested* OOF predictions of the whole choice (every combiner "
                       "fitted, chosen and calibrated on the other folds only): log-loss "
                       f"{nested.nested_oof_log_loss:.4f}, against {nested.oof_log_loss:.4f} for "
                       f"`{nested.method}`'s own OOF figure. The other blend-split rows are each method's own "
                       "OOF figures: honest for one method, but their minimum is optimistic (it was chosen on them). "
                       "`blend/mean` and `blend/rank_mean` are references, never chosen.")
    else:
        chosen_text = f" The method chosen that way is **`{chosen}`**." if chosen else ""
    lines = [f"# Deepfake detection report: `{name}`", "",
             "Every number is a per-video P(FAKE) scored like the Kaggle Deepfake Detection Challenge: log-loss with "
             f"the natural log, y = 1 for FAKE, predictions clipped to [{KAGGLE_EPS:g}, 1 − {KAGGLE_EPS:g}]. "
             "Lower is better.",
             "",
             "Methods are named `<backbone>/<rule>` (one CNN's frame scores aggregated by one rule), `blend/<name>` "
             "and `stack/<name>` (learned on the blend split). Learned combiners, calibrators and the submitted "
             "method are chosen on the blend split's out-of-fold (OOF) predictions only; the test split is never "
             "used to choose anything." + chosen_text,
             "",
             f"95 % intervals: {n_boot} bootstrap resamples of whole families (a REAL original and all its fakes), "
             "so related videos move together. Balanced log-loss is the mean of the FAKE and REAL halves. EER: equal "
             f"error rate. ECE: expected calibration error over {bins} equal-width bins. Accuracy uses P(FAKE) > 0.5.",
             "", "## Data", "", summary_table(table), ""] + sections + protocols
    write_text(out / "report.md", "\n".join(lines) + "\n")
    write_leaderboard(boards, out / "leaderboard.csv")
    write_json(out / "metrics_blend_oof.json", jsons["blend"])
    write_json(out / "metrics.json", jsons["test"])
