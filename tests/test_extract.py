"""The feature stage on a tiny synthetic dataset with a tiny CNN: training, features, resume, shards, bad input."""
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import REPO, kill_when_chunks, run_cli
from extract.cache import MANIFEST_FILE, ChunkManifest

TINY = str(Path(__file__).parent / "configs" / "tiny_extract.toml")


def extract_cli(*args, root, subprocess_run=None):
    return run_cli("extract", *args, "--config", TINY, "--interim", str(root / "interim"),
                   "--models", str(root / "models"), cwd=REPO, subprocess_run=subprocess_run)


def features_cli(*args, root, out, subprocess_run=None):
    return extract_cli("features", *args, "--out", str(out), root=root, subprocess_run=subprocess_run)


@pytest.fixture(scope="module")
def workspace(extract_run):
    """A prepared 24-video dataset, a trained tiny smallcnn and its features file (the session's shared ones)."""
    return extract_run


def read(path):
    return pq.read_table(path)


def test_training_writes_a_safe_model_and_a_card_from_the_train_split_only(workspace):
    card = json.loads((workspace / "models/synthetic/smallcnn.json").read_text())
    videos = pd.read_parquet(workspace / "interim/synthetic/videos.parquet")
    train = videos[(videos["split"] == "train") & (videos["n_crops"] > 0)]
    assert card["data"]["train_videos"] + card["data"]["val_videos"] == len(train)
    assert card["data"]["val_videos"] == len(train[train["fold"] == 0])
    assert card["epochs_run"] == 2 and 1 <= card["best_epoch"] <= 2 and len(card["history"]) == 2
    best = card["history"][card["best_epoch"] - 1]
    assert card["val"]["auc"] == best["val_auc"] and card["val"]["balanced_log_loss"] == best["val_balanced_log_loss"]
    assert card["monitor"] == "auc" and best["val_auc"] == max(h["val_auc"] for h in card["history"])
    assert len(card["data"]["fingerprint"]) == 64 and card["tensorflow"] and card["keras"]
    assert card["cpu"]["cores"] >= 1 and card["cpu"]["intra_op_threads"] == 0
    assert card["config"]["backbone"]["input_size"] == 32
    assert not (workspace / "models/synthetic/.train-smallcnn").exists()


def test_the_kept_model_is_the_epoch_with_the_best_validation_auc(workspace):
    """The saved classifier scores the validation crops to the AUC the card names as the best epoch's."""
    from common.config import load_config
    from common.tensorflow_setup import setup
    from extract.backbones import load_classifier
    from extract.settings import load_settings
    from extract.train import _validate, training_rows

    settings = load_settings(load_config(TINY))
    _, val, root = training_rows(workspace / "interim/synthetic", settings.train)
    model = load_classifier(workspace / "models/synthetic/smallcnn.keras")
    metrics = _validate(model, settings.backbones[0], val, root, settings.batch_size, setup())
    card = json.loads((workspace / "models/synthetic/smallcnn.json").read_text())
    assert metrics["auc"] == pytest.approx(card["val"]["auc"], abs=1e-6)
    assert metrics["auc"] == pytest.approx(max(h["val_auc"] for h in card["history"]), abs=1e-6)


def test_monitor_direction_and_run_key():
    from common.config import load_config
    from extract.settings import load_settings
    from extract.train import _run_key, improves

    assert improves(0.8, None, "auc") and improves(0.8, 0.7, "auc") and not improves(0.7, 0.8, "auc")
    assert improves(0.5, 0.6, "balanced_log_loss") and not improves(0.6, 0.5, "balanced_log_loss")
    assert not improves(0.70005, 0.7, "auc")       # within the tolerance: not better
    auc = load_settings(load_config(TINY))
    loss = dataclasses.replace(auc, train=dataclasses.replace(auc.train, monitor="balanced_log_loss"))
    assert _run_key(auc.backbones[0], auc, "x") != _run_key(loss.backbones[0], loss, "x")


def test_a_changed_monitor_does_not_resume_a_stale_run(tmp_path):
    from extract.train import _resume

    work = tmp_path / ".train-smallcnn"
    work.mkdir()
    (work / "state.json").write_text(json.dumps({"key": "k", "monitor": "balanced_log_loss", "epoch": 3,
                                                 "best": 0.5, "best_epoch": 2, "wait": 1, "history": []}))
    (work / "epoch-003.keras").write_bytes(b"stale")
    assert _resume(work, "k", "balanced_log_loss")["epoch"] == 3
    state = _resume(work, "k", "auc")
    assert state["epoch"] == 0 and state["monitor"] == "auc" and not work.exists()


def test_a_second_train_run_is_up_to_date(workspace):
    model = workspace / "models/synthetic/smallcnn.keras"
    before = model.stat().st_mtime_ns
    res = extract_cli("train", root=workspace, subprocess_run=False)     # no training happens: in this process
    assert res.returncode == 0 and "up to date" in res.stdout and model.stat().st_mtime_ns == before


def test_features_file_schema_and_coverage(workspace):
    table = read(workspace / "features/synthetic/smallcnn.parquet")
    assert table.schema.field("video").type == pa.string()
    assert table.schema.field("frame").type == pa.int32() and table.schema.field("face").type == pa.int16()
    assert table.schema.field("score").type == pa.float32()
    emb_type = table.schema.field("embedding").type
    assert pa.types.is_fixed_size_list(emb_type) and emb_type.list_size == 128
    assert emb_type.value_type == pa.float32()
    df = table.to_pandas()
    frames = pd.read_parquet(workspace / "interim/synthetic/frames.parquet")
    assert len(df) == len(frames)
    assert df[["video", "frame", "face"]].values.tolist() == \
        frames.sort_values(["video", "frame", "face"])[["video", "frame", "face"]].values.tolist()
    assert df["score"].between(0, 1).all() and df["score"].std() > 0
    videos = pd.read_parquet(workspace / "interim/synthetic/videos.parquet")
    assert set(videos.loc[videos["n_crops"] > 0, "split"]) <= set(videos.loc[videos["video"].isin(df["video"]), "split"])
    assert set(df["video"]) == set(videos.loc[videos["n_crops"] > 0, "video"])


def test_scores_match_the_trained_classifier(workspace):
    from extract.backbones import get_backbone, load_classifier
    from extract.cache import load_features
    from extract.pipeline import View, eval_dataset

    table, emb = load_features(workspace / "features/synthetic/smallcnn.parquet")
    frames = pd.read_parquet(workspace / "interim/synthetic/frames.parquet").sort_values(["video", "frame", "face"])
    root = Path(json.loads((workspace / "interim/synthetic/dataset.json").read_text())["root"])
    model = load_classifier(workspace / "models/synthetic/smallcnn.keras")
    paths = np.array([str(root / p) for p in frames["path"][:8]])
    (_, images), = list(eval_dataset(paths, View(32, 0.8), get_backbone("smallcnn").preprocess, 8))
    np.testing.assert_allclose(model.predict_on_batch(images).reshape(-1), table["score"][:8], atol=1e-5)
    assert emb.shape == (len(table), 128) and np.isfinite(emb).all()


def test_features_are_up_to_date_on_a_second_run(workspace):
    before = (workspace / "features/synthetic/smallcnn.parquet").stat().st_mtime_ns
    res = features_cli(root=workspace, out=workspace / "features", subprocess_run=False)   # nothing to compute
    assert res.returncode == 0 and "up to date" in res.stdout
    assert (workspace / "features/synthetic/smallcnn.parquet").stat().st_mtime_ns == before


def test_resume_after_kill_gives_identical_results_without_recomputing(workspace, tmp_path):
    out = tmp_path / "features"
    chunks = out / "synthetic" / "smallcnn.chunks"
    cmd = [sys.executable, "-m", "extract", "features", "--config", TINY, "--interim", str(workspace / "interim"),
           "--models", str(workspace / "models"), "--out", str(out)]
    done, total = kill_when_chunks(cmd, chunks, timeout=60)
    assert not (out / "synthetic/smallcnn.parquet").exists()
    done_rows = sum(pq.read_metadata(p).num_rows for p in done)
    (chunks / ".tmp-chunk-99999.parquet.x").write_bytes(b"half-written")   # as a kill mid-write leaves
    res = features_cli(root=workspace, out=out)
    assert res.returncode == 0, res.stderr
    resumed = read(out / "synthetic/smallcnn.parquet")
    assert resumed.equals(read(workspace / "features/synthetic/smallcnn.parquet"))
    summary = re.search(r"smallcnn: (\d+) chunks written, (\d+) already complete; (\d+) crops", res.stdout)
    assert summary and int(summary[2]) == len(done) and int(summary[1]) == total - len(done)
    assert int(summary[3]) == resumed.num_rows - done_rows   # chunks finished before the kill were not recomputed


def test_shards_then_merge_equal_one_run(workspace, tmp_path):
    a, b = tmp_path / "machine_a", tmp_path / "machine_b"
    for shard, out in (("1/2", a), ("2/2", b)):
        res = features_cli("--shard", shard, root=workspace, out=out)
        assert res.returncode == 0, res.stderr
        assert "chunks left to other shards" in res.stdout
    res = extract_cli("merge", "--out", str(a), root=workspace)
    assert res.returncode == 2 and "chunks missing" in res.stderr and res.stderr.count("\n") == 1
    for f in (b / "synthetic/smallcnn.chunks").glob("chunk-*.parquet"):
        shutil.copy(f, a / "synthetic/smallcnn.chunks" / f.name)
    res = extract_cli("merge", "--out", str(a), root=workspace)
    assert res.returncode == 0, res.stderr
    assert read(a / "synthetic/smallcnn.parquet").equals(read(workspace / "features/synthetic/smallcnn.parquet"))


def test_corrupt_crops_are_skipped_with_a_warning(workspace, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(workspace / "raw", raw)
    folders = sorted(p for p in raw.iterdir() if p.is_dir() and len(list(p.glob("*.png"))) >= 2)
    one = min(folders[0].glob("*.png"))
    one.write_bytes(one.read_bytes()[:40])                 # truncated
    for png in folders[1].glob("*.png"):                    # a video with no readable crop left
        png.write_bytes(b"not an image")
    cfg = tmp_path / "c.toml"
    cfg.write_text(Path(TINY).read_text() + "\n[prepare]\nverify_images = 'none'\n")
    res = run_cli("data", "prepare", "--data", str(raw), "--name", "synthetic", "--out", str(tmp_path / "interim"),
                  "--config", str(cfg))
    assert res.returncode == 0, res.stderr
    shutil.copytree(workspace / "models", tmp_path / "models")
    res = run_cli("extract", "features", "--config", str(cfg), "--interim", str(tmp_path / "interim"),
                  "--models", str(tmp_path / "models"), "--out", str(tmp_path / "features"))
    assert res.returncode == 0, res.stderr
    assert f"unreadable face crop skipped: {one}" in res.stderr
    df = pd.read_parquet(tmp_path / "features/synthetic/smallcnn.parquet")
    full = pd.read_parquet(workspace / "features/synthetic/smallcnn.parquet")
    first_video = f"{folders[0].name}.mp4"
    assert (df["video"] == first_video).sum() == (full["video"] == first_video).sum() - 1
    assert f"{folders[1].name}.mp4" not in set(df["video"])


def test_missing_prerequisites_name_the_command_to_run(tmp_path):
    res = run_cli("extract", "train", "--config", TINY, "--interim", str(tmp_path / "none"), subprocess_run=False)
    assert res.returncode == 2 and "run 'make data'" in res.stderr and res.stderr.count("\n") == 1


def test_missing_model_names_the_command_to_run(workspace, tmp_path):
    res = run_cli("extract", "features", "--config", TINY, "--interim", str(workspace / "interim"),
                  "--models", str(tmp_path / "empty"), "--out", str(tmp_path / "f"), subprocess_run=False)
    assert res.returncode == 2 and "python -m extract train" in res.stderr and res.stderr.count("\n") == 1


def test_training_resumes_after_a_kill_to_the_same_weights(workspace, tmp_path):
    """Killed after epoch 1 of 2 and resumed: the weights of the workspace's model, trained straight through with the
    same config and data."""
    from extract.backbones import load_classifier

    args = ["train", "--config", TINY, "--interim", str(workspace / "interim")]
    state = tmp_path / "killed/synthetic/.train-smallcnn/state.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "extract", *args, "--models", str(tmp_path / "killed")],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if state.exists() and json.loads(state.read_text() or "{}").get("epoch") == 1:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert json.loads(state.read_text())["epoch"] == 1, "the run should have been killed after epoch 1"
    resumed = run_cli("extract", *args, "--models", str(tmp_path / "killed"))
    assert resumed.returncode == 0 and "resuming after epoch 1" in resumed.stdout
    a = load_classifier(workspace / "models/synthetic/smallcnn.keras").get_weights()
    b = load_classifier(tmp_path / "killed/synthetic/smallcnn.keras").get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_merge_refuses_chunks_from_another_run_and_bad_shards(workspace, tmp_path):
    out = tmp_path / "features"
    res = features_cli("--shard", "1/2", root=workspace, out=out)
    assert res.returncode == 0, res.stderr
    chunks = out / "synthetic/smallcnn.chunks"
    manifest = ChunkManifest.read(chunks / MANIFEST_FILE)
    stale = pq.read_table(chunks / "chunk-00000.parquet")
    pq.write_table(stale.replace_schema_metadata({b"deepfake_ensemble": b'{"key": "other"}'}),
                   chunks / "chunk-00000.parquet")
    for k in range(manifest.chunks):
        target = chunks / f"chunk-{k:05d}.parquet"
        if not target.exists():
            shutil.copy(chunks / "chunk-00002.parquet", target)
    res = extract_cli("merge", "--out", str(out), root=workspace)
    assert res.returncode == 2 and "chunk-00000.parquet: made from another model or dataset" in res.stderr
    for bad in ("0/2", "3/2", "x"):      # refused before any model runs: in this process
        res = features_cli("--shard", bad, root=workspace, out=out, subprocess_run=False)
        assert res.returncode == 2 and "--shard" in res.stderr and res.stderr.count("\n") == 1


def features_with(setting: str, workspace: Path, tmp_path: Path) -> Path:
    """``extract features`` with one more ``[extract]`` setting, into ``tmp_path/f``; the features file."""
    cfg = tmp_path / "setting.toml"
    cfg.write_text(Path(TINY).read_text().replace("[extract]\n", f"[extract]\n{setting}\n"))
    res = run_cli("extract", "features", "--config", str(cfg), "--interim", str(workspace / "interim"),
                  "--models", str(workspace / "models"), "--out", str(tmp_path / "f"))
    assert res.returncode == 0, res.stderr
    return tmp_path / "f/synthetic/smallcnn.parquet"


def test_mixed_precision_features_match_float32(workspace, tmp_path):
    features_with('mixed_precision = "on"', workspace, tmp_path)
    mixed = pd.read_parquet(tmp_path / "f/synthetic/smallcnn.parquet")
    full = pd.read_parquet(workspace / "features/synthetic/smallcnn.parquet")
    assert mixed[["video", "frame", "face"]].equals(full[["video", "frame", "face"]])
    np.testing.assert_allclose(mixed["score"], full["score"], atol=2e-2)
    assert not np.array_equal(mixed["score"], full["score"])         # it did compute in float16


def test_float16_embeddings_are_the_float32_ones_rounded(workspace, tmp_path):
    from extract.cache import file_key, load_features

    half_path = features_with('embedding_dtype = "float16"', workspace, tmp_path)
    full_path = workspace / "features/synthetic/smallcnn.parquet"
    assert read(half_path).schema.field("embedding").type.value_type == pa.float16()
    assert file_key(half_path) != file_key(full_path)              # never merged with float32 chunks
    (half, half_emb), (full, full_emb) = load_features(half_path), load_features(full_path)
    pd.testing.assert_frame_equal(half, full)                       # rows and float32 scores unchanged
    np.testing.assert_array_equal(half_emb, full_emb.astype(np.float16).astype(np.float32))
    assert half_path.stat().st_size < full_path.stat().st_size


@pytest.mark.parametrize("cache_mb", [2048, 0])
def test_unreadable_training_crops_are_named_on_both_input_paths(workspace, tmp_path, cache_mb):
    raw = tmp_path / "raw"
    shutil.copytree(workspace / "raw", raw)
    videos = pd.read_parquet(workspace / "interim/synthetic/videos.parquet")
    train_video = videos[(videos["split"] == "train") & (videos["fold"] != 0) & (videos["n_crops"] > 1)]
    bad = min((raw / train_video["video"].iloc[0][:-4]).glob("*.png"))
    bad.write_bytes(b"broken")
    cfg = tmp_path / "c.toml"
    cfg.write_text(Path(TINY).read_text().replace("epochs = 2", f"epochs = 1\ncache_mb = {cache_mb}")
                   + "\n[prepare]\nverify_images = 'none'\n")
    assert run_cli("data", "prepare", "--data", str(raw), "--name", "synthetic", "--out", str(tmp_path / "interim"),
                   "--config", str(cfg)).returncode == 0
    res = run_cli("extract", "train", "--config", str(cfg), "--interim", str(tmp_path / "interim"),
                  "--models", str(tmp_path / "models"))
    assert res.returncode == 0, res.stderr
    assert f"unreadable training crop skipped: {bad}" in res.stderr


def test_two_backbones_train_at_once_in_their_own_processes(workspace, tmp_path):
    config = tmp_path / "two.toml"
    # one crop per training video: what is checked here is the processes, not what they learn
    config.write_text(Path(TINY).read_text().replace('backbones = ["smallcnn"]', 'backbones = ["smallcnn", "rescnn"]')
                      .replace("epochs = 2", "epochs = 2\nframes_per_video = 1")
                      + '\n[backbones.rescnn]\ninput_size = 32\n')
    args = ("extract", "train", "--config", str(config), "--interim", str(workspace / "interim"),
            "--models", str(tmp_path / "models"))
    res = run_cli(*args)
    assert res.returncode == 0, res.stderr
    for name in ("smallcnn", "rescnn"):
        card = json.loads((tmp_path / f"models/synthetic/{name}.json").read_text())
        assert card["epochs_run"] == 2 and card["cpu"]["inter_op_threads"] == 1, card["cpu"]
        assert f"{name}: best epoch" in res.stdout
    again = run_cli(*args)
    assert again.returncode == 0 and again.stdout.count("is up to date") == 2, again.stdout
    # a backbone that cannot be built stops the run in one line, raised in its worker process
    junk = tmp_path / "junk.weights.h5"
    junk.write_bytes(b"not weights")
    config.write_text(config.read_text() + f'weights = "{junk}"\n')
    res = run_cli(*args[:-1], str(tmp_path / "models2"))
    assert res.returncode == 2 and "cannot load weights file" in res.stderr, res.stderr
    assert res.stderr.strip().count("\n") == 0
