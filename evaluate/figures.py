"""The report's figures, drawn with matplotlib (Agg) and written as PNGs next to ``report.md``."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from common.atomic import atomic_path  # noqa: E402

from .metrics import log_loss  # noqa: E402

DPI = 110


def _save(fig, path: Path) -> str:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path.name


def roc(part: pd.DataFrame, board: pd.DataFrame, top: int, path: Path) -> str:
    fig, ax = plt.subplots(figsize=(5.5, 5))
    y = part["label"].to_numpy()
    for m in board.index[:top]:
        fpr, tpr, _ = roc_curve(y, part[m].to_numpy())
        ax.plot(fpr, tpr, lw=1.5, label=f"{m} (AUC {board.loc[m, 'auc']:.3f})")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    ax.set(xlabel="false positive rate (REAL called FAKE)", ylabel="true positive rate (FAKE caught)",
           title="ROC, top methods by log-loss", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def reliability(part: pd.DataFrame, board: pd.DataFrame, top: int, bins: int, path: Path) -> str:
    fig, ax = plt.subplots(figsize=(5.5, 5))
    y = part["label"].to_numpy(np.float64)
    edges = np.linspace(0, 1, bins + 1)
    for m in board.index[:top]:
        p = part[m].to_numpy(np.float64)
        b = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
        n = np.bincount(b, minlength=bins)
        ok = n > 0
        mean_p = np.bincount(b, weights=p, minlength=bins)[ok] / n[ok]
        share = np.bincount(b, weights=y, minlength=bins)[ok] / n[ok]
        ax.plot(mean_p, share, marker="o", lw=1, label=f"{m} (ECE {board.loc[m, 'ece']:.3f})")
        ax.scatter(mean_p, share, s=8 + 120 * n[ok] / n.max(), alpha=0.3)
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    ax.set(xlabel="mean predicted P(FAKE) in bin", ylabel="share of FAKE videos in bin",
           title=f"Reliability ({bins} equal-width bins)", xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=7, loc="upper left")
    return _save(fig, path)


def histogram(part: pd.DataFrame, method: str, path: Path) -> str:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    edges = np.linspace(0, 1, 26)
    for label, name, color in ((0, "REAL", "tab:blue"), (1, "FAKE", "tab:red")):
        p = part.loc[part["label"] == label, method]
        ax.hist(p, bins=edges, alpha=0.55, color=color, label=f"{name} ({len(p)})", density=True)
    ax.set(xlabel="predicted P(FAKE)", ylabel="density", title=f"Scores by class: {method}")
    ax.legend(fontsize=8)
    return _save(fig, path)


def rule_heatmap(part: pd.DataFrame, methods: list[str], path: Path) -> str | None:
    """Log-loss of every ``<backbone>/<rule>`` column; None when there are no such columns."""
    cells = [m.split("/", 1) for m in methods if not m.startswith(("blend/", "stack/"))]
    if not cells:
        return None
    backbones = list(dict.fromkeys(b for b, _ in cells))
    rules = list(dict.fromkeys(r for _, r in cells))
    y = part["label"].to_numpy(np.float64)
    grid = np.full((len(rules), len(backbones)), np.nan)
    for b, r in cells:
        grid[rules.index(r), backbones.index(b)] = log_loss(y, part[f"{b}/{r}"].to_numpy())
    fig, ax = plt.subplots(figsize=(2.2 + 1.6 * len(backbones), 1 + 0.38 * len(rules)))
    norm = LogNorm(vmin=np.nanmin(grid), vmax=np.nanmax(grid))      # one bad rule must not flatten the rest
    im = ax.imshow(grid, cmap="viridis_r", aspect="auto", norm=norm)
    middle = np.sqrt(np.nanmin(grid) * np.nanmax(grid))
    for i in range(len(rules)):
        for j in range(len(backbones)):
            ax.text(j, i, f"{grid[i, j]:.3f}", ha="center", va="center", fontsize=8,
                    color="white" if grid[i, j] > middle else "black")
    ax.set_xticks(range(len(backbones)), backbones, fontsize=8)
    ax.set_yticks(range(len(rules)), rules, fontsize=8)
    ax.set_title("Log-loss by aggregation rule and backbone", fontsize=10)
    fig.colorbar(im, ax=ax, label="log-loss (log scale)")
    return _save(fig, path)


def by_manipulation(part: pd.DataFrame, board: pd.DataFrame, top: int, path: Path) -> str | None:
    """Log-loss per manipulation method (FAKE videos) and on the REAL videos; None without the column."""
    if "manipulation" not in part or part["manipulation"].isna().all():
        return None
    groups = part["manipulation"].where(part["label"] == 1, "REAL").fillna("unknown")
    names = sorted(set(groups) - {"REAL"}) + ["REAL"]
    methods = list(board.index[:top])
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(names), 4))
    for k, m in enumerate(methods):
        values = [log_loss(part.loc[groups == g, "label"], part.loc[groups == g, m]) for g in names]
        ax.bar(np.arange(len(names)) + (k - (len(methods) - 1) / 2) * width, values, width, label=m)
    counts = groups.value_counts()
    ax.set_xticks(range(len(names)), [f"{g}\n({counts[g]})" for g in names], fontsize=8)
    ax.set(ylabel="log-loss", title="Log-loss by manipulation method (videos)")
    ax.legend(fontsize=7)
    return _save(fig, path)


def draw_all(part: pd.DataFrame, board: pd.DataFrame, methods: list[str], out: Path, key: str, top: int,
             bins: int) -> dict[str, str]:
    """Every figure of one report part; returns {kind: file name} for those drawn."""
    figs = {"roc": roc(part, board, top, out / f"{key}_roc.png"),
            "reliability": reliability(part, board, min(top, 3), bins, out / f"{key}_reliability.png"),
            "histogram": histogram(part, board.index[0], out / f"{key}_histogram.png"),
            "heatmap": rule_heatmap(part, methods, out / f"{key}_rules_heatmap.png"),
            "manipulation": by_manipulation(part, board, min(top, 3), out / f"{key}_manipulation.png")}
    return {k: v for k, v in figs.items() if v}


def frame_budget(table: pd.DataFrame, path: Path) -> str:
    """Test log-loss and AUC against the frames kept per video (log2 axis), one line per method of ``table``
    (``frame_budget.csv``'s rows), the submitted method with its interval band; the CNN cost on the top axis."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    shown = table[table["role"].isin(["submitted", "reference", "best rule"])]
    for metric, ax in zip(("log_loss", "auc"), axes):
        for method, rows in shown.groupby("method", sort=False):
            rows = rows.sort_values("frames")
            submitted = rows["role"].iloc[0] == "submitted"
            ax.plot(rows["frames"], rows[metric], marker="o", lw=2.2 if submitted else 1.2,
                    ls="-" if submitted else "--", label=method + (" (submitted)" if submitted else ""))
            if submitted:
                ax.fill_between(rows["frames"], rows[f"{metric}_low"], rows[f"{metric}_high"], alpha=0.2)
        ax.set_xscale("log", base=2)
        ticks = sorted(table["frames"].unique())
        last = table.loc[table["all_frames"], "frames"].max()
        ax.set_xticks(ticks, [f"{k}\n(all)" if k == last else str(k) for k in ticks])
        ax.set(xlabel="frames kept per video", ylabel="test " + ("log-loss" if metric == "log_loss" else "AUC"))
        cost = table.drop_duplicates("frames").set_index("frames")["cnn_seconds_per_video"]
        if cost.notna().all():
            top = ax.secondary_xaxis("top")
            top.set_xticks(ticks, [f"{cost[k] * 1000:.0f} ms" for k in ticks], fontsize=7)
            top.set_xlabel("CNN cost per video", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Frame budget: every combiner refit with k frames per video (test split)", fontsize=10, y=1.06)
    return _save(fig, path)


def ablation(table: pd.DataFrame, path: Path) -> str:
    """Horizontal bars: test log-loss without a backbone minus with all (``ablation.csv``'s rows), with the
    paired-bootstrap intervals."""
    labels = [f"{r.method} without {r.without}" for r in table.itertuples()]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(table) + 1.2))
    y = np.arange(len(table))[::-1]
    diff = table["difference"].to_numpy()
    err = np.vstack([diff - table["difference_low"].to_numpy(), table["difference_high"].to_numpy() - diff])
    ax.barh(y, diff, xerr=err, color=np.where(diff > 0, "tab:red", "tab:blue"), alpha=0.7, capsize=3)
    ax.axvline(0, c="grey", lw=1)
    ax.set_yticks(y, labels, fontsize=7)
    ax.set(xlabel="test log-loss without the backbone − with every backbone (> 0: it helped)",
           title="Backbone ablation (95 % paired family bootstrap)")
    return _save(fig, path)
