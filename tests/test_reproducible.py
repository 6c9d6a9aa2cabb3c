"""The same config and data give the same bytes: the whole chain (synth, prepare, train, features, ensemble fit,
report) run twice from scratch in two folders, each step a fresh process."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from conftest import run_cli

CONFIG = Path(__file__).parent / "configs" / "tiny_chain.toml"


def chain(root: Path) -> None:
    c = ("--config", str(CONFIG))
    folders = ("--interim", str(root / "interim"))
    steps = [("data", "synth", "--out", str(root / "raw"), *c),
             ("data", "prepare", "--data", str(root / "raw"), "--out", str(root / "interim"), *c),
             ("extract", "train", *folders, "--models", str(root / "models"), *c),
             ("extract", "features", *folders, "--models", str(root / "models"), "--out", str(root / "features"), *c),
             ("ensemble", "fit", *folders, "--features", str(root / "features"), "--out", str(root / "predictions"),
              "--models", str(root / "models"), *c),
             ("evaluate", "report", "--predictions", str(root / "predictions"), "--out", str(root / "reports"), *c)]
    for step in steps:
        res = run_cli(*step)
        assert res.returncode == 0, f"{step[:2]}: {res.stderr}"


def test_two_runs_of_the_chain_give_byte_identical_outputs(tmp_path):
    chain(tmp_path / "a")
    chain(tmp_path / "b")
    for rel in ("reports/synthetic/metrics.json", "reports/synthetic/metrics_blend_oof.json",
                "predictions/synthetic/fit.json", "predictions/synthetic/videos.parquet",
                "models/synthetic/ensemble/stack_chosen.json"):
        a, b = (tmp_path / run / rel for run in ("a", "b"))
        assert a.read_bytes() == b.read_bytes(), rel
    # the same frame scores and embeddings; the file's run key names its own folders, so only the rows compare
    a, b = (pq.read_table(tmp_path / run / "features/synthetic/smallcnn.parquet") for run in ("a", "b"))
    assert a.equals(b)
    fit = json.loads((tmp_path / "a/predictions/synthetic/fit.json").read_text())
    assert fit["best_method"] == "stack/chosen" and len(fit["chosen"]["chosen_per_fold"]) == 4
    metrics = json.loads((tmp_path / "a/reports/synthetic/metrics.json").read_text())
    assert metrics["n_videos"] > 0 and "stack/chosen" in metrics["methods"]
