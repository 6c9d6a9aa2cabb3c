"""``python -m evaluate seeds``: the spread of the test figures over several seeds of the learned stages.

Each run is a predictions folder (``data/predictions`` for the config's seed, ``data/seeds/<K>/predictions`` for
``--seed-offset K``) of the same videos and splits. A gap between two methods is judged against two sources of
noise: which videos were drawn (the family bootstrap, within a run) and how the learned stages fell (the seeds).

Per run, the submitted method (``fit.json``'s ``best_method``) is compared on the test split with the best single
``<backbone>/<rule>`` column, that column chosen on the blend split (lowest log-loss there), by a paired family
bootstrap. Writes ``reports/<NAME>/seeds.json`` and ``seeds.md``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from common.atomic import atomic_path, write_json, write_text
from common.errors import DataError

from .metrics import log_loss, paired_bootstrap
from .predictions import load_predictions

LEARNED = ("blend/", "stack/")       # method prefixes of combiners; every other method column is one (backbone, rule)


def _labelled(table: pd.DataFrame, split: str) -> pd.DataFrame:
    return table[(table["split"] == split) & table["label"].notna()]


def run_seeds(runs: list[Path], out: Path, n_boot: int, seed: int) -> dict:
    """Compare ``runs`` (predictions folders of one dataset) and write ``seeds.json`` and ``seeds.md`` to ``out``."""
    if len(runs) < 2:
        raise DataError(f"--runs: {len(runs)} run given; the seed spread needs at least 2")
    seen: dict[Path, Path] = {}
    for path in runs:
        before = seen.setdefault(path.resolve(), path)
        if before is not path:
            raise DataError(f"--runs: {before} and {path} are the same folder ({path.resolve()}); give each seed's "
                            "predictions once")
    loaded = [(path, *load_predictions(path)) for path in runs]
    first_path, first = loaded[0][0], loaded[0][1]
    for path, table, _, fit in loaded:
        if fit is None:
            raise DataError(f"{path}/fit.json: not found or without best_method; run 'make ensemble' for this seed")
        same = table[["video", "split"]].reset_index(drop=True).equals(first[["video", "split"]].reset_index(drop=True))
        if not same:
            raise DataError(f"{path}/videos.parquet: other videos or splits than {first_path}/videos.parquet; the "
                            "seeds must share the data and splits (rerun the seed with the same 'make data')")
    methods = [m for m in loaded[0][2] if all(m in t.columns for _, t, _, _ in loaded)]
    per_run, losses = [], {m: [] for m in methods}
    for path, table, _, fit in loaded:
        test, blend = _labelled(table, "test"), _labelled(table, "blend")
        if test["label"].nunique() < 2 or blend["label"].nunique() < 2:
            raise DataError(f"{path}/videos.parquet: the test and blend splits need labelled FAKE and REAL videos")
        y = test["label"].to_numpy(np.float64)
        for m in methods:
            losses[m].append(log_loss(y, test[m].to_numpy(np.float64)))
        singles = [m for m in methods if not m.startswith(LEARNED)]
        if not singles:
            raise DataError(f"{path}/videos.parquet: no <backbone>/<rule> column to compare with")
        yb = blend["label"].to_numpy(np.float64)
        single = min(singles, key=lambda m: log_loss(yb, blend[m].to_numpy(np.float64)))
        submitted = fit.best_method
        gap = paired_bootstrap(y, test[submitted].to_numpy(np.float64), test[single].to_numpy(np.float64),
                               test["family"].to_numpy(), log_loss, n_boot=n_boot, seed=seed)
        per_run.append({"predictions": str(path), "submitted": submitted, "chosen_method": fit.chosen.method,
                        "submitted_test_log_loss": log_loss(y, test[submitted].to_numpy(np.float64)),
                        "best_single": single, "best_single_test_log_loss": log_loss(y, test[single].to_numpy()),
                        "difference": gap["diff"], "difference_ci": gap["ci"],
                        "worse_beyond_noise": bool(gap["ci"][0] > 0)})
    summary = [{"method": m, "test_log_loss": v, "mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)),
                "min": float(np.min(v)), "max": float(np.max(v))} for m, v in losses.items()]
    report = {"runs": per_run, "methods": sorted(summary, key=lambda r: r["mean"]), "bootstrap": n_boot}
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "seeds.md") as tmp:
        write_text(tmp, _markdown(report))
    write_json(out / "seeds.json", report)
    return report


def _markdown(report: dict) -> str:
    runs = report["runs"]
    intro = ("Each run trains the backbones and fits the ensemble with another seed, on the same videos and splits. "
             "Test-split log-loss per method: mean, standard deviation and range over the seeds.")
    lines = [f"# Seed spread: {len(runs)} seeds of the learned stages", "", intro, "",
             "| method | mean | std | min | max |", "|---|---|---|---|---|"]
    for s in report["methods"]:
        lines.append(f"| `{s['method']}` | {s['mean']:.4f} | {s['std']:.4f} | {s['min']:.4f} | {s['max']:.4f} |")
    gap = ("The submitted method against the best single `<backbone>/<rule>` column chosen on the blend split, on "
           f"the test split; 95 % interval of the difference from {report['bootstrap']} paired family bootstrap "
           "resamples (negative: the submitted method is better).")
    header = ("| run | submitted | test log-loss | best single (blend) | test log-loss | difference [95 % CI] | "
              "worse beyond noise |")
    lines += ["", gap, "", header, "|---|---|---|---|---|---|---|"]
    for i, r in enumerate(runs):
        lo, hi = r["difference_ci"]
        sub = f"`{r['submitted']}`" + (f" (`{r['chosen_method']}`)" if r["chosen_method"] else "")
        lines.append(f"| {i} | {sub} | {r['submitted_test_log_loss']:.4f} | `{r['best_single']}` | "
                     f"{r['best_single_test_log_loss']:.4f} | {r['difference']:+.4f} [{lo:+.4f}, {hi:+.4f}] | "
                     f"{'yes' if r['worse_beyond_noise'] else 'no'} |")
    return "\n".join(lines) + "\n"
