"""`python -m evaluate transfer`: a second tiny dataset scored by the models of a tiny trained chain, nothing fitted
on it; refusals of overlapping datasets; the feature cache resumed after a kill."""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import log_loss as sk_log_loss

from conftest import REPO, kill_when_chunks, run_cli

CHAIN = Path(__file__).parent / "configs" / "tiny_chain.toml"
CHUNK_VIDEOS = 2               # small chunks, so that a killed run leaves some behind


def folders(root: Path) -> list[str]:
    return ["--interim", str(root / "interim"), "--models-dir", str(root / "models"), "--features",
            str(root / "features"), "--predictions", str(root / "predictions"), "--out", str(root / "reports")]


def transfer(root: Path, name: str, models: str = "a", config: Path | None = None, subprocess_run=None,
             extra: tuple = ()):
    return run_cli("evaluate", "transfer", "--models", models, "--name", name, *folders(root), *extra,
                   "--config", str(config or root / "transfer.toml"), subprocess_run=subprocess_run)


def prepare(root: Path, raw: Path, name: str) -> None:
    res = run_cli("data", "prepare", "--data", str(raw), "--name", name, "--out", str(root / "interim"),
                  "--config", str(CHAIN))
    assert res.returncode == 0, res.stderr


@pytest.fixture(scope="module")
def transferred(tmp_path_factory, tiny_chain_run):
    """Dataset a (the session's tiny chain: synth, prepare, train, features, fit, copied here), dataset b (synth with
    another seed, fewer videos: other names and identities), and b scored by a's models."""
    root = tmp_path_factory.mktemp("transfer")
    shutil.copytree(tiny_chain_run, root, dirs_exist_ok=True)
    (root / "raw").rename(root / "raw_a")
    res = run_cli("data", "synth", "--out", str(root / "raw_b"), "--seed", "7", "--videos", "40", "--config",
                  str(CHAIN))
    assert res.returncode == 0, res.stderr[-2000:]
    prepare(root, root / "raw_b", "b")
    (root / "transfer.toml").write_text(CHAIN.read_text().replace("chunk_videos = 8",
                                                                  f"chunk_videos = {CHUNK_VIDEOS}"))
    res = transfer(root, "b")
    assert res.returncode == 0, res.stderr[-3000:]
    return root, res


def test_transfer_scores_every_labelled_video_with_the_models_methods(transferred):
    root, res = transferred
    out = root / "reports/b_from_a"
    videos = pd.read_parquet(root / "interim/b/videos.parquet")
    labelled = videos[videos["label"].notna()]
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"dataset", "split", "n_videos", "epsilon", "methods", "best_method", "models"}
    assert (metrics["dataset"], metrics["split"], metrics["models"]) == ("b", "all", "a")
    assert metrics["n_videos"] == len(labelled) == len(videos)      # every split of b, not its test split only
    own = pd.read_parquet(root / "predictions/a/videos.parquet")
    table = pd.read_parquet(root / "predictions/b_from_a/videos.parquet")
    # a's own methods under a's names: raw rule columns, the blends and stacks, and the submitted stack/chosen
    assert [c for c in table.columns if "/" in c] and set(metrics["methods"]) == {c for c in own.columns if "/" in c}
    assert list(table.columns[:6]) == ["video", "split", "label", "fold", "family", "n_frames"]
    assert sorted(table["video"]) == sorted(videos["video"]) and "manipulation" in table
    for method, m in metrics["methods"].items():
        assert m["log_loss"] == pytest.approx(sk_log_loss(table["label"], table[method].clip(1e-15, 1 - 1e-15)))
        assert m["log_loss_ci"][0] <= m["log_loss"] <= m["log_loss_ci"][1]
    board = pd.read_csv(out / "leaderboard.csv")
    assert set(board["split"]) == {"all"} and board["log_loss"].is_monotonic_increasing
    assert len(board) == len(metrics["methods"]) and {"log_loss_ci_low", "log_loss_ci_high"} <= set(board)
    text = (out / "report.md").read_text()
    assert "nothing was trained, fitted, calibrated or chosen on `b`" in text and "](all_reliability.png)" in text
    fit = json.loads((root / "predictions/a/fit.json").read_text())
    assert f"P(FAKE) = {fit['prior']:.3f}" in text and "Against `a`'s own test split" in text
    assert (out / "all_reliability.png").exists() and (out / "all_roc.png").exists()
    meta = json.loads((root / "predictions/b_from_a/transfer.json").read_text())
    assert meta["models"] == "a" and meta["dataset"] == "b" and meta["best_method"] == fit["best_method"]
    assert "stack/chosen" in res.stdout and "nothing fitted on b" in res.stdout


def test_predict_and_transfer_agree_whatever_the_config_says_of_the_view(transferred, tmp_path):
    """predict used to take each backbone's input size and centre crop from --config, transfer from the model
    card: with another view in the config, predict scored the crops another way than the model was trained on."""
    root, _ = transferred
    table = pd.read_parquet(root / "predictions/b_from_a/videos.parquet").set_index("video")
    dataset = json.loads((root / "interim/b/dataset.json").read_text())
    picks = [v for v in table.index if table.loc[v, "n_frames"] > 0][:3]
    inputs = [str(Path(dataset["root"]) / v.removesuffix(".mp4")) for v in picks]
    other = tmp_path / "other_view.toml"
    other.write_text(CHAIN.read_text().replace("input_size = 32", "input_size = 48")
                     .replace("center_crop = 0.8", "center_crop = 1.0"))
    assert json.loads((root / "models/a/smallcnn.json").read_text())["input_size"] == 32
    for method in ("stack/chosen", "smallcnn/max"):
        res = run_cli("evaluate", "predict", *inputs, "--name", "a", "--models", str(root / "models"),
                      "--method", method, "--config", str(other), "--json")
        assert res.returncode == 0, res.stderr
        got = {item["video"]: item["p_fake"] for item in json.loads(res.stdout)["videos"]}
        for video in picks:
            assert got[video] == pytest.approx(table.loc[video, method], abs=1e-6), (method, video)


def copy_dataset(root: Path, source: Path, name: str, extra_rows: list[dict]) -> Path:
    """A copy of a synthetic dataset folder with more metadata rows (and their face folders, copied)."""
    target = root / f"raw_{name}"
    shutil.copytree(source, target)
    with open(target / "metadata.csv", "a", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        for row in extra_rows:
            shutil.copytree(row.pop("folder"), target / row["filename"].removesuffix(".mp4"))
            writer.writerow([row["filename"], "train", row["original"], row["label"], row["method"]])
    return target


def refused(res, *words) -> str:
    assert res.returncode == 2 and res.stderr.startswith("error: ") and res.stderr.count("\n") == 1, res.stderr
    for w in words:
        assert w in res.stderr, (w, res.stderr)
    return res.stderr


def nothing_written(root: Path, name: str) -> None:
    for folder in ("features", "predictions", "reports"):
        assert not (root / folder / f"{name}_from_a").exists(), folder


def test_datasets_that_overlap_the_training_videos_are_refused_and_nothing_is_written(transferred):
    root, _ = transferred
    a = pd.read_parquet(root / "interim/a/videos.parquet")
    # a's own data under another name: every train and blend video overlaps (its test split does not)
    prepare(root, root / "raw_a", "a_again")
    err = refused(transfer(root, "a_again", subprocess_run=False), "interim/a_again/videos.parquet: row ")
    n_training = int(a["split"].isin(["train", "blend"]).sum())
    assert f"{n_training} of its {len(a)} videos overlap" in err
    nothing_written(root, "a_again")
    # b plus one FAKE video of a's train split: named, with its count
    train_fake = a[(a["split"] == "train") & (a["label"] == 1) & a["folder"].notna()].iloc[0]
    extra = {"filename": train_fake["video"], "original": train_fake["original"], "label": "FAKE",
             "method": train_fake["method"], "folder": root / "raw_a" / train_fake["folder"]}
    prepare(root, copy_dataset(root, root / "raw_b", "b_plus", [extra]), "b_plus")
    err = refused(transfer(root, "b_plus", subprocess_run=False), f"video {train_fake['video']}",
                  "of its 41 videos overlap", "training videos of")
    nothing_written(root, "b_plus")
    # b plus a new FAKE (new name, new crops) made from a REAL original of a's blend split: its family overlaps
    blend_real = a[(a["split"] == "blend") & (a["label"] == 0)].iloc[0]["video"]
    b_folder = next(p for p in sorted((root / "raw_b").iterdir()) if p.is_dir())
    extra = {"filename": "zzzzzzzzzz.mp4", "original": blend_real, "label": "FAKE", "method": "seam",
             "folder": b_folder}
    prepare(root, copy_dataset(root, root / "raw_b", "b_family", [extra]), "b_family")
    refused(transfer(root, "b_family", subprocess_run=False), "(zzzzzzzzzz.mp4)", f"its original {blend_real}",
            f"its family {blend_real}", "of its 41 videos overlap")
    nothing_written(root, "b_family")


def test_other_refusals_are_one_line(transferred, tmp_path):
    root, _ = transferred
    refused(transfer(root, "a", subprocess_run=False), "a transfer scores another dataset")
    refused(transfer(root, "b", models="nope", subprocess_run=False), "models/nope", "make ensemble NAME=nope")
    refused(transfer(root, "missing", subprocess_run=False), "interim/missing/videos.parquet")
    # models that predate the record of their training videos: refit, never skip the check
    models = tmp_path / "models"
    shutil.copytree(root / "models", models)
    (models / "a/training_videos.json").unlink()
    res = transfer(root, "b", subprocess_run=False, extra=("--models-dir", str(models)))
    refused(res, "a/training_videos.json", "predate", "python -m extract train --name a")
    shutil.copy(root / "models/a/training_videos.json", models / "a")
    (models / "a/smallcnn.keras").unlink()
    res = transfer(root, "b", subprocess_run=False, extra=("--models-dir", str(models)))
    refused(res, "a/smallcnn.keras", "backbone 'smallcnn'")
    # a dataset without labelled REAL videos
    shutil.copytree(root / "interim/b", root / "interim/b_fake_only")
    videos = pd.read_parquet(root / "interim/b_fake_only/videos.parquet")
    videos.loc[videos["label"] == 0, "label"] = pd.NA
    videos.to_parquet(root / "interim/b_fake_only/videos.parquet", index=False)
    refused(transfer(root, "b_fake_only", subprocess_run=False), "b_fake_only/videos.parquet", "0 REAL")
    nothing_written(root, "b_fake_only")


def test_a_rerun_reuses_the_cache_and_a_killed_run_resumes_to_the_same_bytes(transferred, tmp_path):
    root, _ = transferred
    cache = root / "features/b_from_a/smallcnn.parquet"
    outputs = [root / "reports/b_from_a/metrics.json", root / "reports/b_from_a/leaderboard.csv",
               root / "predictions/b_from_a/videos.parquet"]
    before = [p.read_bytes() for p in outputs]
    mtime = cache.stat().st_mtime_ns
    res = transfer(root, "b")
    assert res.returncode == 0 and "is up to date" in res.stdout, res.stderr
    assert cache.stat().st_mtime_ns == mtime and [p.read_bytes() for p in outputs] == before
    # killed part-way through the feature cache of a fresh folder, then rerun
    fresh = tmp_path / "features"
    chunks = fresh / "b_from_a/smallcnn.chunks"
    args = [a if a != str(root / "features") else str(fresh) for a in folders(root)]
    args = [a if a != str(root / "reports") else str(tmp_path / "reports") for a in args]
    args = [a if a != str(root / "predictions") else str(tmp_path / "predictions") for a in args]
    shutil.copytree(root / "predictions/a", tmp_path / "predictions/a")
    cmd = [sys.executable, "-m", "evaluate", "transfer", "--models", "a", "--name", "b", *args,
           "--config", str(root / "transfer.toml")]
    done, total = kill_when_chunks(cmd, chunks)
    assert not (tmp_path / "reports/b_from_a/metrics.json").exists()
    res = subprocess.run(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                         check=False)
    assert res.returncode == 0, res.stderr
    summary = re.search(r"smallcnn: (\d+) chunks written, (\d+) already complete", res.stdout)
    assert summary and int(summary[2]) == len(done) and int(summary[1]) == total - len(done)
    assert pq.read_table(fresh / "b_from_a/smallcnn.parquet").equals(pq.read_table(cache))
    resumed = [tmp_path / "reports/b_from_a/metrics.json", tmp_path / "reports/b_from_a/leaderboard.csv",
               tmp_path / "predictions/b_from_a/videos.parquet"]
    assert [p.read_bytes() for p in resumed] == before


def test_the_models_record_the_videos_that_trained_them(transferred):
    root, _ = transferred
    a = pd.read_parquet(root / "interim/a/videos.parquet")
    for path, split in (("models/a/training_videos.json", "train"), ("models/a/ensemble/training_videos.json",
                                                                       "blend")):
        record = json.loads((root / path).read_text())
        part = a[a["split"] == split]
        assert record["split"] == split and record["videos"] == sorted(part["video"])
        assert record["families"] == sorted(set(part["family"]))
        assert record["originals"] == sorted(set(part["original"].dropna()))
    # the record is no method of the saved ensemble
    from ensemble.saved import SavedEnsemble

    assert not any("training" in m for m in SavedEnsemble(root / "models/a/ensemble").methods())


RECORD = {"split": "train", "source": "data/interim/a/videos.parquet", "n_videos": 1, "videos": ["v.mp4"],
          "originals": [], "families": ["v.mp4"]}


@pytest.mark.parametrize("change, match", [
    ({"split": 5}, "split = 5"),
    ({"split": None}, "split = None"),
    ({"videos": [], "n_videos": 0, "families": []}, "'videos' is empty"),
    ({"n_videos": 2}, "n_videos = 2 but 1 videos are listed"),
    ({"source": None}, "no 'source' entry"),
    ({"families": "v.mp4"}, "'families' must be a list of video names"),
])
def test_a_damaged_training_record_is_one_line(tmp_path, change, match):
    """A non-text split was a TypeError when the refusal named the splits; an emptied record refused nothing."""
    from common.errors import DataError
    from data.training_videos import RECORD_FILE, TrainingRecord

    record = {k: v for k, v in {**RECORD, **change}.items() if v is not None or k == "split"}
    (tmp_path / RECORD_FILE).write_text(json.dumps(record))
    with pytest.raises(DataError, match=rf"training_videos.json: {re.escape(match)}.*python -m extract train"):
        TrainingRecord.read(tmp_path, "python -m extract train --name a")


def test_the_typed_card_and_record_write_the_same_bytes_they_read(transferred, tmp_path):
    from common.atomic import write_json
    from data.training_videos import RECORD_FILE, TrainingRecord
    from extract.card import ModelCard

    root, _ = transferred
    card_file = root / "models/a/smallcnn.json"
    card = ModelCard.read(card_file, "")
    assert (card.backbone, card.input_size, card.center_crop, card.weights) == ("smallcnn", 32, 0.8, "none")
    write_json(tmp_path / "card.json", card.to_json())
    assert (tmp_path / "card.json").read_bytes() == card_file.read_bytes()
    TrainingRecord.read(root / "models/a/ensemble", "").write(tmp_path)
    assert (tmp_path / RECORD_FILE).read_bytes() == (root / "models/a/ensemble" / RECORD_FILE).read_bytes()


@pytest.mark.parametrize("change, match", [
    ({"input_size": "32"}, "input_size = '32', center_crop = 0.8: not a model card"),
    ({"center_crop": 0}, "input_size = 32, center_crop = 0: not a model card"),
    ({"weights": None}, "weights = None, expected a str"),
    ({"history": {}}, "history = {}, expected a list"),
    ({"run_key": ...}, "no 'run_key' entry"),
    ({"backbone": "other"}, "backbone = 'other', the card of another backbone"),
])
def test_a_damaged_model_card_stops_a_transfer_in_one_line(transferred, tmp_path, change, match):
    root, _ = transferred
    models = tmp_path / "models"
    shutil.copytree(root / "models", models)
    card = json.loads((models / "a/smallcnn.json").read_text())
    card = {k: v for k, v in {**card, **change}.items() if v is not ...}
    (models / "a/smallcnn.json").write_text(json.dumps(card))
    res = transfer(root, "b", subprocess_run=False, extra=("--models-dir", str(models)))
    refused(res, "a/smallcnn.json: " + match, "make ensemble NAME=a")


def test_a_truncated_model_of_any_backbone_is_refused_before_any_cache_is_written(transferred, tmp_path):
    """With two backbones and the second's .keras truncated, the first's feature cache used to be written before
    the refusal: every model file is checked whole (its zip read, without TensorFlow) first."""
    root, _ = transferred
    models = tmp_path / "models/a"
    shutil.copytree(root / "models/a", models)
    meta = json.loads((models / "ensemble/ensemble.json").read_text())
    meta["backbones"] = ["smallcnn", "zzcnn"]                  # a second backbone, after the good one
    (models / "ensemble/ensemble.json").write_text(json.dumps(meta))
    data = (models / "smallcnn.keras").read_bytes()
    (models / "zzcnn.keras").write_bytes(data[: len(data) // 2])
    card = json.loads((models / "smallcnn.json").read_text())
    (models / "zzcnn.json").write_text(json.dumps({**card, "backbone": "zzcnn", "model_file": "zzcnn.keras"}))
    out = [tmp_path / f for f in ("features", "predictions", "reports")]
    res = transfer(root, "b", subprocess_run=False, extra=("--models-dir", str(tmp_path / "models"), "--features",
                                                           str(out[0]), "--predictions", str(out[1]), "--out",
                                                           str(out[2])))
    refused(res, "a/zzcnn.keras: not a .keras model file")
    assert not any(f.exists() for f in out)
