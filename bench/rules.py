"""``python -m bench rules``: the vectorised rules against ``pandas.groupby(...).apply`` with a Python
function per video, peak memory, and LightGBM fit time. Writes ``reports/bench/ensemble.json``.

The pandas baseline runs on a slice of the videos (``--baseline-videos``) since it is ~50x slower; both are
reported in rows/s, measured in the same process (the vectorised time is the best of two runs).
"""
from __future__ import annotations

import platform
import resource
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

from common.atomic import write_json

from ensemble.rules import RULES, Rule, aggregate
from ensemble.stackers import LightGBMStack



def python_rules(p: np.ndarray, rules: list[Rule]) -> dict:
    """The same rules for one video, written plainly (the seed-project style)."""
    from scipy.stats import trim_mean

    out = {}
    for r in rules:
        x = r.param
        if r.name == "mean":
            v = p.mean()
        elif r.name == "median":
            v = np.median(p)
        elif r.name == "max":
            v = p.max()
        elif r.name == "min":
            v = p.min()
        elif r.name == "trimmed_mean":
            v = trim_mean(p, x)
        elif r.name == "topk_mean":
            v = np.sort(p)[-int(x):].mean()
        elif r.name == "quantile":
            v = np.quantile(p, x)
        elif r.name == "logit_mean":
            q = np.clip(p, 1e-7, 1 - 1e-7)
            v = 1 / (1 + np.exp(-np.log(q / (1 - q)).mean()))
        elif r.name == "frac_above":
            v = (p > x).mean()
        elif r.name == "confident":
            hi = p[p > x]
            if len(hi) > len(p) // 2.5 and len(hi) > 11:
                v = hi.mean()
            elif np.count_nonzero(p < 0.2) > 0.9 * len(p):
                v = p[p < 0.2].mean()
            else:
                v = p.mean()
        else:
            w = np.abs(p - 0.5)
            v = (w * p).sum() / w.sum() if w.sum() > 0 else p.mean()
        out[r.label] = v
    return out


def run_bench(out: Path, frames: int, videos: int, baseline_videos: int, lgb_videos: int, lgb_features: int,
              seed: int) -> dict:
    rng = np.random.default_rng(seed)
    rules = [Rule.parse(name) for name in RULES]          # every rule, at its default parameter
    groups = np.sort(rng.integers(0, videos, frames))
    scores = rng.beta(0.7, 0.7, frames)

    runs = []
    for _ in range(2):                  # best of two: the first also pays for faulting in fresh memory
        start = time.perf_counter()
        fast = aggregate(groups, scores, videos, rules)
        runs.append(time.perf_counter() - start)
    vec_seconds = min(runs)
    tracemalloc.start()                 # a second pass for memory: tracing slows allocations down
    aggregate(groups, scores, videos, rules)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    sub = groups < baseline_videos
    table = pd.DataFrame({"video": groups[sub], "score": scores[sub]})
    start = time.perf_counter()
    slow = table.groupby("video")["score"].apply(lambda s: pd.Series(python_rules(s.to_numpy(), rules))).unstack()
    pandas_seconds = time.perf_counter() - start
    for r in rules:   # the two agree on the slice
        np.testing.assert_allclose(fast[r.label][:baseline_videos][np.bincount(groups[sub], minlength=baseline_videos) > 0],
                                   slow[r.label].to_numpy(), rtol=1e-9, atol=1e-12)

    X = pd.DataFrame(rng.normal(size=(lgb_videos, lgb_features)), columns=[f"f{i}" for i in range(lgb_features)])
    y = (X.iloc[:, :5].sum(axis=1) + rng.normal(0, 2, lgb_videos) > 0).astype(int).to_numpy()
    params = {"num_leaves": 31, "learning_rate": 0.05, "n_estimators": 200, "min_child_samples": 20,
              "subsample": 0.8, "subsample_freq": 1, "colsample_bytree": 0.8, "reg_lambda": 1.0,
              "early_stopping_rounds": 20, "num_threads": 0}
    start = time.perf_counter()
    LightGBMStack(list(X.columns), params, seed).fit(X, y)
    lgb_seconds = time.perf_counter() - start

    vec_rate = frames / vec_seconds
    pandas_rate = int(sub.sum()) / pandas_seconds
    report = {
        "machine": platform.machine(), "rules": [r.label for r in rules],
        "vectorised": {"frames": frames, "videos": videos, "seconds": round(vec_seconds, 3),
                       "first_run_seconds": round(runs[0], 3),
                       "rows_per_s": round(vec_rate), "peak_traced_mb": round(peak / 2**20, 1)},
        "pandas_apply": {"frames": int(sub.sum()), "videos": baseline_videos, "seconds": round(pandas_seconds, 3),
                         "rows_per_s": round(pandas_rate)},
        "speedup": round(vec_rate / pandas_rate, 1),
        "process_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "lightgbm_fit": {"videos": lgb_videos, "features": lgb_features, "rounds": 200,
                         "seconds": round(lgb_seconds, 2)},
    }
    print(f"rules ({len(rules)}): vectorised {vec_rate:,.0f} rows/s over {frames:,} frames in {videos:,} videos "
          f"({vec_seconds:.2f} s best of 2, first {runs[0]:.2f} s); pandas groupby.apply {pandas_rate:,.0f} rows/s on {baseline_videos:,} videos; "
          f"speedup {vec_rate / pandas_rate:.0f}x")
    print(f"peak traced memory of the vectorised rules {peak / 2**20:.0f} MiB; process peak RSS "
          f"{report['process_peak_rss_mb']:.0f} MiB")
    print(f"LightGBM fit, {lgb_videos:,} videos x {lgb_features} features, 200 rounds: {lgb_seconds:.1f} s")
    write_json(out, report)
    print(f"wrote {out}")
    return report
