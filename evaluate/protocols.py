"""The frame-budget and backbone-ablation sections of ``evaluate report``, from what ``ensemble protocols`` wrote
beside the predictions table (``frame_budget.parquet``, ``ablation.parquet``, ``protocols.json``).

Only the labelled test split is scored; everything compared was fitted and chosen on the blend split.

``frame_budget.csv``, one row per (budget, method):
  ``frames`` (frames kept per video; the last row group, ``all_frames`` true, keeps every cached crop and its
  ``frames`` is the most a video has), ``all_frames``, ``method``, ``role`` (``submitted``: ``stack/chosen``, the
  method chosen on the blend split at that budget, named in ``chosen_method``; ``combiner``: a learned combiner;
  ``reference``: ``blend/mean``, nothing learned; ``best rule``: each backbone's rule with the lowest blend-split
  log-loss on every cached crop, the same rule at every budget), ``chosen_method``, ``n_videos``,
  ``crops_per_video`` (mean over the videos with a crop; every backbone scores the same crops),
  ``cnn_seconds_per_video`` (those crops through every backbone at the frames/s ``extract features`` measured;
  empty without a record),
  ``log_loss``, ``log_loss_low``, ``log_loss_high``, ``auc``, ``auc_low``, ``auc_high`` (95 % family bootstrap),
  ``difference_to_all`` (log-loss at this budget − the same method's with every crop) and its 95 % paired
  family-bootstrap bounds ``difference_to_all_low``, ``difference_to_all_high``.

``ablation.csv``, one row per (learned method, backbone left out):
  ``method``, ``without``, ``chosen_method`` (for ``stack/chosen``: the method chosen without it), ``n_videos``,
  ``log_loss_full``, ``log_loss_without``, ``difference`` (without − full: positive means the backbone helped),
  ``difference_low``, ``difference_high`` (95 % paired family bootstrap), ``auc_full``, ``auc_without``.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from common.atomic import atomic_path
from common.errors import DataError
from common.problems import Problems
from common.schema import (
    INTEGER,
    LABEL,
    PROBABILITY,
    TEXT,
    check_table,
    read_parquet,
)
from ensemble.records import (
    CHOSEN,
    FULL,
    PLAIN_MEAN,
    PROTOCOLS_FILE,
    PROTOCOLS_HINT,
    AblationRecord,
    FrameBudgetRecord,
    ProtocolsRecord,
)

from . import figures
from .metrics import (
    bootstrap_ci,
    grouped_bootstrap_indices,
    log_loss,
    paired_bootstrap,
    roc_auc,
)

HINT = PROTOCOLS_HINT
META = {"video": TEXT, "split": TEXT, "label": LABEL, "family": TEXT}


def _test(table: pd.DataFrame) -> pd.DataFrame:
    return table[(table["split"] == "test") & table["label"].notna()]


def _load(folder: Path, name: str, column: str, kind: str, methods: list[str], every_method: bool = False
          ) -> pd.DataFrame:
    """A protocol table, checked: ``methods`` must be there, probabilities in every row (with ``every_method``,
    every ``<a>/<b>`` column too: each budget's table has them all)."""
    path = folder / name
    table = read_parquet(path, f"{column} table", HINT)
    if every_method:
        methods = list(dict.fromkeys(methods + [c for c in table.columns if "/" in c]))
    check_table(path, table, {column: kind, **META, **{m: PROBABILITY for m in methods}}, key=[column, "video"],
                what=f"{name} table")
    return table


def _values(table: pd.DataFrame, column: str, listed: list, path: Path) -> None:
    """Every value of ``column`` is one ``protocols.json`` lists, and every listed one has rows."""
    stray = ~table[column].isin(listed).to_numpy()
    if stray.any():
        i = int(np.flatnonzero(stray)[0])
        value = table[column].iloc[i]
        value = value.item() if isinstance(value, np.generic) else value
        raise DataError(f"{path}: row {i} (video {table['video'].iloc[i]}): {column} = {value!r}, "
                        f"expected one of {listed} (those protocols.json lists); {HINT}")
    missing = [v for v in listed if not (table[column] == v).any()]
    if missing:
        raise DataError(f"{path}: no row with {column} = {missing[0]!r}, which protocols.json lists; {HINT}")


def _score(y: np.ndarray, p: np.ndarray, groups: np.ndarray, indices) -> dict:
    ll_ci = bootstrap_ci(y, p, groups, log_loss, indices=indices)
    auc_ci = bootstrap_ci(y, p, groups, roc_auc, indices=indices)
    return {"log_loss": log_loss(y, p), "log_loss_low": ll_ci[0], "log_loss_high": ll_ci[1],
            "auc": roc_auc(y, p), "auc_low": auc_ci[0], "auc_high": auc_ci[1]}


def best_rules(table: pd.DataFrame, backbones: list[str]) -> list[str]:
    """Each backbone's rule column with the lowest blend-split log-loss (the rules fit nothing, so the blend
    split is fair ground to choose on), in backbone order."""
    blend = table[(table["split"] == "blend") & table["label"].notna()]
    y = blend["label"].to_numpy(np.float64)
    out = []
    for b in backbones:
        rules = [c for c in table.columns if c.startswith(f"{b}/") and table[c].notna().all()]
        if rules and len(blend):
            out.append(min(rules, key=lambda c: log_loss(y, blend[c].to_numpy(np.float64))))
    return out


def _paired_variants(table: pd.DataFrame, column: str, reference, path: Path, n_boot: int, seed: int):
    """The test rows of the ``reference`` value of ``column`` (indexed by video), their labels (n,), families (n,)
    and bootstrap replicates, and {value: that variant's test rows in the same video order}: every variant is
    scored on the same replicates, so the differences between them are paired."""
    test = _test(table)
    full = test[test[column] == reference].set_index("video")
    if full["label"].nunique() < 2:
        raise DataError(f"{path}: {column} {reference!r}: the test split needs labelled FAKE and REAL videos")
    y, groups = full["label"].to_numpy(np.float64), full["family"].to_numpy()
    parts = {}
    for value in table[column].unique():
        part = test[test[column] == value].set_index("video").reindex(full.index)
        if part["split"].isna().any():
            raise DataError(f"{path}: {column} {value!r}: not the same test videos as {column} {reference!r}")
        parts[value] = part
    return full, y, groups, grouped_bootstrap_indices(groups, n_boot, seed), parts


def frame_budget(folder: Path, budget: FrameBudgetRecord, n_boot: int, seed: int) -> pd.DataFrame:
    """The rows of ``frame_budget.csv`` (see the module docstring)."""
    learned = list(budget.learned)
    table = _load(folder, "frame_budget.parquet", "frames", INTEGER, learned + [PLAIN_MEAN], every_method=True)
    _values(table, "frames", list(budget.budgets), folder / "frame_budget.parquet")
    budgets = sorted(table["frames"].unique().tolist(), key=lambda k: (k == 0, k))
    backbones = list(budget.frames_per_s)
    rules = best_rules(table[table["frames"] == 0], backbones)
    roles = {CHOSEN: "submitted", PLAIN_MEAN: "reference", **{m: "best rule" for m in rules},
             **{m: "combiner" for m in learned if m != CHOSEN}}
    full, y, groups, indices, parts = _paired_variants(table, "frames", 0, folder / "frame_budget.parquet", n_boot,
                                                       seed)
    rows = []
    for k in budgets:
        part, crops, seconds = parts[k], budget.crops_per_video[k], budget.seconds_per_video[k]
        for method, role in roles.items():
            p = part[method].to_numpy(np.float64)
            gap = paired_bootstrap(y, p, full[method].to_numpy(np.float64), groups, log_loss, indices=indices)
            rows.append({"frames": int(k) if k else budget.most_frames, "all_frames": k == 0,
                         "method": method, "role": role,
                         "chosen_method": budget.chosen[k] if method == CHOSEN else "",
                         "n_videos": len(part),
                         "crops_per_video": float(np.mean(list(crops.values()))) if crops else math.nan,
                         "cnn_seconds_per_video": math.nan if seconds is None else float(seconds),
                         **_score(y, p, groups, indices), "difference_to_all": gap["diff"],
                         "difference_to_all_low": gap["ci"][0], "difference_to_all_high": gap["ci"][1]})
    return pd.DataFrame(rows)


def ablation(folder: Path, record: AblationRecord, n_boot: int, seed: int) -> pd.DataFrame:
    """The rows of ``ablation.csv`` (see the module docstring)."""
    learned = list(record.learned)
    table = _load(folder, "ablation.parquet", "without", TEXT, learned)
    _values(table, "without", [FULL, *record.backbones], folder / "ablation.parquet")
    chosen = record.chosen
    full, y, groups, indices, parts = _paired_variants(table, "without", FULL, folder / "ablation.parquet", n_boot,
                                                       seed)
    rows = []
    for backbone in [b for b in parts if b != FULL]:
        part = parts[backbone]
        for method in learned:
            p_without, p_full = part[method].to_numpy(np.float64), full[method].to_numpy(np.float64)
            gap = paired_bootstrap(y, p_without, p_full, groups, log_loss, indices=indices)
            rows.append({"method": method, "without": backbone,
                         "chosen_method": chosen[backbone] if method == CHOSEN else "",
                         "n_videos": len(full), "log_loss_full": log_loss(y, p_full),
                         "log_loss_without": log_loss(y, p_without), "difference": gap["diff"],
                         "difference_low": gap["ci"][0], "difference_high": gap["ci"][1],
                         "auc_full": roc_auc(y, p_full), "auc_without": roc_auc(y, p_without)})
    return pd.DataFrame(rows)


def protocol_sections(folder: Path, out: Path, n_boot: int, seed: int) -> list[str]:
    """Write ``frame_budget.csv``, ``ablation.csv`` and their figures to ``out``; the report's sections (no
    lines when ``ensemble protocols`` has not run)."""
    path = folder / PROTOCOLS_FILE
    if not path.exists():
        print(f"warning: {path}: not found, so the report has no frame-budget or ablation section; "
              f"{HINT}", file=sys.stderr)
        _remove(out, "frame_budget.csv", "frame_budget.png", "ablation.csv", "ablation.png")
        return []
    info = ProtocolsRecord.read(path)
    unmeasured = Problems()
    for b, fps in info.frame_budget.frames_per_s.items():
        if fps is None:
            unmeasured.add(f"backbones without a measured frames/s in {path} (the CNN cost is left empty; "
                           "'python -m extract features' measures it)", b)
    unmeasured.warn()
    budget = frame_budget(folder, info.frame_budget, n_boot, seed)
    # both tables are read and checked before either is written: a bad ablation leaves no new frame_budget.csv
    table = ablation(folder, info.ablation, n_boot, seed) if info.ablation is not None else None
    _write_csv(budget, out / "frame_budget.csv")
    lines = _budget_text(budget, figures.frame_budget(budget, out / "frame_budget.png"))
    if table is not None:
        _write_csv(table, out / "ablation.csv")
        lines += _ablation_text(table, figures.ablation(table, out / "ablation.png"))
    else:
        _remove(out, "ablation.csv", "ablation.png")
    return lines


def _remove(out: Path, *names: str) -> None:
    """Files of an earlier run's sections that this report has not: never left beside it with other numbers."""
    for name in names:
        (out / name).unlink(missing_ok=True)


def _write_csv(table: pd.DataFrame, target: Path) -> None:
    with atomic_path(target) as tmp:
        table.to_csv(tmp, index=False)


def _budget_text(table: pd.DataFrame, figure: str) -> list[str]:
    sub = table[table["role"] == "submitted"]
    lines = ["## Frame budget (test split)", "",
             ("How many frames per video does the ensemble need? At each budget every video keeps that many of its "
              "cached frames (evenly spaced, as the `linspace` sampling policy picks them; every face of a kept "
              "frame), the rules are recomputed and every combiner is refit and chosen again on the blend split with "
              "the same budget. Nothing is re-extracted. The CNN cost is the crops through every backbone at the "
              "frames/s `extract features` measured (face detection not included). Full table: `frame_budget.csv`."),
             "", ("| frames | crops/video | CNN ms/video | submitted (chosen) | log-loss | 95 % CI | AUC | "
                  "− all frames (paired 95 % CI) |"), "|---|---|---|---|---|---|---|---|"]
    for r in sub.itertuples():
        frames = f"{r.frames} (all)" if r.all_frames else str(r.frames)
        cost = "–" if r.cnn_seconds_per_video != r.cnn_seconds_per_video else f"{r.cnn_seconds_per_video * 1000:.1f}"
        lines.append(f"| {frames} | {r.crops_per_video:.1f} | {cost} | `{r.chosen_method}` | {r.log_loss:.4f} | "
                     f"[{r.log_loss_low:.3f}, {r.log_loss_high:.3f}] | {r.auc:.3f} | {r.difference_to_all:+.4f} "
                     f"[{r.difference_to_all_low:+.4f}, {r.difference_to_all_high:+.4f}] |")
    return lines + ["", f"![frame budget]({figure})", "",
                    ("*Test log-loss and AUC against the frames kept per video, with 95 % family-bootstrap intervals "
                     "for the submitted method; the top axis gives the CNN cost per video at that budget.*"), ""]


def _ablation_text(table: pd.DataFrame, figure: str) -> list[str]:
    lines = ["## Backbone ablation (test split)", "",
             ("What does each backbone buy? Every learned combiner is refit on the blend split without one backbone; "
              "the difference is its test log-loss without that backbone minus with every backbone (positive: the "
              "backbone helped), with a 95 % paired family-bootstrap interval. Full table: `ablation.csv`."), "",
             "| method | without | log-loss full | without | difference | 95 % CI |", "|---|---|---|---|---|---|"]
    for r in table.itertuples():
        chosen = f" (chose `{r.chosen_method}`)" if r.chosen_method else ""
        lines.append(f"| `{r.method}`{chosen} | {r.without} | {r.log_loss_full:.4f} | {r.log_loss_without:.4f} | "
                     f"{r.difference:+.4f} | [{r.difference_low:+.4f}, {r.difference_high:+.4f}] |")
    return lines + ["", f"![ablation]({figure})", "",
                    ("*Change in test log-loss when each backbone is left out (bars: 95 % paired family-bootstrap "
                     "intervals); right of zero, the backbone helped.*"), ""]
