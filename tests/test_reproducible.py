"""The same config and data give the same bytes: the whole chain (synth, prepare, train, features, ensemble fit,
report) run from scratch in a folder of its own, against the session's shared run of the same chain (made in
another folder, maybe by another pytest-xdist worker); TensorFlow steps each in a fresh process."""
from __future__ import annotations

import json

import pyarrow.parquet as pq

from conftest import tiny_chain


def test_two_runs_of_the_chain_give_byte_identical_outputs(tiny_chain_run, tmp_path):
    runs = {"a": tiny_chain_run, "b": tmp_path / "b"}
    tiny_chain(runs["b"])
    for rel in ("reports/a/metrics.json", "reports/a/metrics_blend_oof.json", "predictions/a/fit.json",
                "predictions/a/videos.parquet", "models/a/ensemble/stack_chosen.json"):
        a, b = (runs[run] / rel for run in ("a", "b"))
        assert a.read_bytes() == b.read_bytes(), rel
    # the same frame scores and embeddings; the file's run key names its own folders, so only the rows compare
    a, b = (pq.read_table(runs[run] / "features/a/smallcnn.parquet") for run in ("a", "b"))
    assert a.equals(b)
    fit = json.loads((runs["a"] / "predictions/a/fit.json").read_text())
    assert fit["best_method"] == "stack/chosen" and len(fit["chosen"]["chosen_per_fold"]) == 4
    metrics = json.loads((runs["a"] / "reports/a/metrics.json").read_text())
    assert metrics["n_videos"] > 0 and "stack/chosen" in metrics["methods"]
