"""``python -m data bench``: throughput of the dataset stage, measured in one run on this machine.

Writes ``reports/bench/data.json``: synth frames/s with 1 and N workers, and prepare crops/s for each
``verify_images`` mode, with ratios taken inside the same run (shared machines are noisy).
"""
from __future__ import annotations

import copy
import platform
import tempfile
import time
from pathlib import Path

from .atomic import write_json
from .prepare import VERIFY_MODES, prepare
from .synth import SynthParams, synthesize


def run_bench(config: dict, out: Path, videos: int, workers: int) -> dict:
    params = SynthParams.from_config(config, videos=videos)
    result: dict = {"machine": platform.machine(), "python": platform.python_version(),
                    "videos": videos, "frames_max": params.frames, "size": params.size}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synth = {}
        for n in sorted({1, workers}):
            start = time.perf_counter()
            plans = synthesize(params, tmp / f"synth{n}", workers=n)
            seconds = time.perf_counter() - start
            frames = sum(len(p.frames) for p in plans if not p.missing)
            synth[f"workers_{n}"] = {"seconds": round(seconds, 3), "frames_per_s": round(frames / seconds, 1)}
        synth["speedup"] = round(synth[f"workers_{workers}"]["frames_per_s"] / synth["workers_1"]["frames_per_s"], 2)
        result["synth"] = synth
        result["synth_frames"] = frames

        modes = {}
        for mode in VERIFY_MODES:
            cfg = copy.deepcopy(config)
            cfg["prepare"]["verify_images"] = mode
            start = time.perf_counter()
            _, table, _ = prepare([tmp / "synth1"], f"bench-{mode}", cfg, out_root=tmp / "interim", raw_root=tmp)
            seconds = time.perf_counter() - start
            modes[mode] = {"seconds": round(seconds, 3), "crops_per_s": round(len(table) / seconds, 1)}
        modes["decode_vs_none"] = round(modes["decode"]["seconds"] / modes["none"]["seconds"], 2)
        result["prepare"] = modes
    write_json(out, result)
    return result
