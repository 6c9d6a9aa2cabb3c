"""`python -m bench`: the scale bench's generated DFDC-shaped cache, its measured `ensemble fit` subprocess and
report; the commands' flags; the rules bench."""
import json
import subprocess
import textwrap
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

from bench import scale
from conftest import REPO, run_cli
from data.splits import check_no_family_leak
from data.tables import VIDEO_COLUMN_ORDER, load_videos
from extract.cache import file_key, load_features

TINY = ["--videos", "120", "--dim", "8", "--executors", "local"]   # 6 blend families: 4 folds, nested


def tiny_spec(dtype: str = "float16", videos: int = 120) -> scale.ScaleSpec:
    return scale.ScaleSpec(videos, ("cnn_a", "cnn_b"), 8, dtype, 7, {"train": 0.5, "blend": 0.3, "test": 0.2}, 5,
                           0.3)


def read_runs(path: Path) -> list[dict]:
    return json.loads(path.read_text())["runs"]


def test_the_generated_cache_is_a_feature_cache_in_bounded_row_groups(tmp_path, monkeypatch):
    monkeypatch.setattr(scale, "ROW_GROUP_ROWS", 300)
    made = scale.generate(tiny_spec(), tmp_path / "a", progress=False)
    videos = load_videos(tmp_path / "a/interim/scale")
    check_no_family_leak(videos)
    assert tuple(videos.columns[:len(VIDEO_COLUMN_ORDER)]) == VIDEO_COLUMN_ORDER
    assert len(videos) == 120 and made["families"] == videos["family"].nunique() == scale.family_count(120) == 19
    assert (videos["label"] == 1).sum() == 120 - 19                      # one REAL original per family
    blend = videos[videos["split"] == "blend"]
    assert blend["fold"].nunique() >= 4 and set(blend["label"]) == {0, 1}
    for name in ("cnn_a", "cnn_b"):
        path = tmp_path / "a/features/scale" / f"{name}.parquet"
        frames, emb = load_features(path)
        assert len(frames) == made["rows"] == videos["n_crops"].sum() and emb.shape == (made["rows"], 8)
        assert set(frames.groupby("video").size()) == {32, 64}           # 32 frames, one or two faces
        scores = frames.merge(videos[["video", "label"]], on="video").groupby("label")["score"].mean()
        assert scores[1] > scores[0] + 0.1                               # the scores carry the label
        meta = pq.ParquetFile(path).metadata
        groups = [set(pq.ParquetFile(path).read_row_group(i, columns=["video"])["video"].to_pylist())
                  for i in range(meta.num_row_groups)]
        assert meta.num_row_groups > 3 and max(meta.row_group(i).num_rows for i in range(meta.num_row_groups)) <= 300
        assert sum(len(g) for g in groups) == 120                        # no video spans two row groups
        assert pq.read_schema(path).field("embedding").type.value_type == "halffloat"
        assert file_key(path) == "bench-scale seed=7 videos=120"
    scale.generate(tiny_spec(), tmp_path / "b", progress=False)
    for name in ("cnn_a", "cnn_b"):                                      # deterministic
        assert pq.read_table(tmp_path / "a/features/scale" / f"{name}.parquet").equals(
            pq.read_table(tmp_path / "b/features/scale" / f"{name}.parquet"))


def test_bench_scale_measures_ensemble_fit_and_deletes_the_cache(tmp_path):
    work, out = tmp_path / "work", tmp_path / "scale.json"
    res = run_cli("bench", "scale", *TINY, "--work", str(work), "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert not work.exists()
    [run] = read_runs(out)
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], check=False, capture_output=True,
                          text=True)
    assert run["code"] == (head.stdout.strip() or "unknown")
    assert (run["videos"], run["backbones"], run["dim"], run["dtype"], run["executor"]) == (120, 2, 8, "float16",
                                                                                           "local")
    assert run["ok"] and run["exit_code"] == 0 and run["error"] is None
    assert 0 < run["seconds"] < 300 and 0 < run["generate_seconds"] < 60
    assert 0.03 < run["peak_rss_gib"] < 8 and 0.03 < run["child_maxrss_gib"] < 8
    assert 120 * 32 <= run["rows"] <= 120 * 64 and run["rows"] % 32 == 0
    assert run["cache_bytes"] >= run["rows"] * 8 * 2 * 2 and run["cache_gib"] == round(run["cache_bytes"] / 2**30, 3)
    assert run["best_method"] and 0 < run["best_oof_log_loss"] < 1 and 0 < run["nested_oof_log_loss"] < 1


FAKE_FIT = """
    import subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", "b = bytearray(300 << 20); import time; time.sleep(30)"])
    open("child.pid", "w").write(str(child.pid))
    mine = bytearray(300 << 20)
    time.sleep(1.5)
    print("allocating", file=sys.stderr)
    more = bytearray(2 << 30)
"""


def test_a_failed_run_is_recorded_with_its_tree_peak_and_leaves_nothing_behind(tmp_path):
    failing, quiet = tmp_path / "failing", tmp_path / "quiet"           # two checkouts, fitted on one cache
    for checkout, fit in ((failing, FAKE_FIT), (quiet, "")):
        (checkout / "ensemble").mkdir(parents=True)
        (checkout / "ensemble" / "__init__.py").write_text("")
        (checkout / "ensemble" / "__main__.py").write_text(textwrap.dedent(fit))
    work, out = tmp_path / "work", tmp_path / "scale.json"
    args = ("bench", "scale", *TINY, "--work", str(work), "--out", str(out))
    res = run_cli(*args, "--code", str(failing), str(quiet), "--memory-limit-gib", "1")
    assert res.returncode == 0, res.stderr
    assert "FAILED" in res.stdout and not work.exists()
    run, other = read_runs(out)
    assert not run["ok"] and run["exit_code"] == 1 and run["error"] == "MemoryError"
    assert run["code"] == "unknown" and run["memory_limit_gib"] == 1
    assert (run["code_path"], other["code_path"]) == (str(failing), str(quiet)) and other["ok"]
    assert run["rows"] == other["rows"] and run["generate_seconds"] == other["generate_seconds"]   # one cache
    # the tree holds the fit's 300 MiB and its child's 300 MiB; the fit's own peak is at least its 300 MiB
    assert run["peak_rss_gib"] > 0.5 and run["child_maxrss_gib"] > 0.25
    assert run["peak_vm_gib"] > run["peak_rss_gib"]
    pid = int((failing / "child.pid").read_text())
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE   # the orphan ended


def test_runs_are_merged_by_key():
    old = [{"videos": 1, "executor": "local", "code": "a", "dtype": "float16", "seconds": 1},
           {"videos": 2, "executor": "local", "code": "a", "dtype": "float16", "seconds": 2}]
    new = [{"videos": 2, "executor": "local", "code": "a", "dtype": "float16", "seconds": 3},
           {"videos": 2, "executor": "dask:2", "code": "a", "dtype": "float16", "seconds": 4}]
    assert [r["seconds"] for r in scale.merge_runs(old, new)] == [1, 3, 4]


def test_executors_map_to_fit_flags():
    local, dask = scale.parse_executors("local, dask:2")
    assert (local.label, dask.label) == ("local", "dask:2")
    assert scale.executor_flags(local) == [] and scale.executor_flags(dask) == ["--executor", "dask", "--scheduler",
                                                                               "local:2"]


@pytest.mark.parametrize("flags", [
    ["scale", "--executors", "local,spark"], ["scale", "--executors", "dask:0"],
    ["scale", "--executors", "local,local"], ["scale", "--dtype", "float64"], ["scale", "--dim", "0"],
    ["scale", "--videos", "0"], ["scale", "--memory-limit-gib", "-1"], ["scale", "--code", "/nonexistent"],
    ["scale", "--backbones", "3"], ["scale", "--code", ".", "./"], ["rules", "--videos", "0"], ["rules", "--baseline-videos", "200000"],
    ["data", "--workers", "0"], ["faces", "--dask", "0"], ["extract", "--backbone", "nonexistent"],
    # more processes than cores only thrash (a local:999 run on 2 cores did for 6 minutes)
    ["scale", "--executors", "dask:999"], ["faces", "--dask", "999"], ["data", "--workers", "999"],
])
def test_bad_flags_are_one_line_errors(flags):
    res = run_cli("bench", *flags)
    assert res.returncode == 2 and res.stderr.startswith("error: ") and res.stderr.count("\n") == 1, res.stderr


def test_too_few_videos_and_a_foreign_report_are_one_line_errors(tmp_path):
    work, out = tmp_path / "work", tmp_path / "scale.json"
    res = run_cli("bench", "scale", "--videos", "5", "--work", str(work), "--out", str(out))
    assert res.returncode == 2 and "blend split" in res.stderr and res.stderr.count("\n") == 1, res.stderr
    assert not work.exists() and not out.exists()
    out.write_text("[1, 2]")
    res = run_cli("bench", "scale", *TINY, "--work", str(work), "--out", str(out))
    assert res.returncode == 2 and "not a scale report" in res.stderr and not work.exists()


def test_the_rules_bench_keeps_its_defaults_and_runs(tmp_path):
    out = tmp_path / "ensemble.json"
    res = run_cli("bench", "rules", "--frames", "2000", "--videos", "100", "--baseline-videos", "20",
                  "--lgb-videos", "300", "--lgb-features", "4", "--out", str(out))
    assert res.returncode == 0, res.stderr
    report = json.loads(out.read_text())
    assert report["vectorised"]["frames"] == 2000 and report["lightgbm_fit"]["videos"] == 300
