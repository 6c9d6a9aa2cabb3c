"""The ensemble reads feature files a part of whole videos at a time (in this process or on Dask workers) and
gets the numbers one in-memory pass over the whole file gives."""
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from common.config import load_config
from common.errors import DataError
from common.executor import ExecutorSpec
from ensemble.fit import run_fit
from ensemble.rules import Rule
from ensemble.video_features import backbone_videos, video_table
from extract.cache import FeatureFile, feature_table, load_features, read_part
from test_ensemble import BACKBONES, make_inputs

ROW_GROUP = 7          # tiny row groups: most videos straddle two or more


def _with_second_faces(path: Path, seed: int, row_group: int = ROW_GROUP) -> None:
    """Rewrite a feature file with a second face on some frames, in row groups of ``row_group`` rows."""
    frames, emb = load_features(path)
    rng = np.random.default_rng(seed)
    two = rng.random(len(frames)) < 0.4
    extra = frames[two].assign(face=2, score=rng.random(int(two.sum())).astype(np.float32))
    frames = pd.concat([frames, extra], ignore_index=True)
    emb = np.concatenate([emb, rng.normal(size=(int(two.sum()), emb.shape[1])).astype(np.float32)])
    order = frames.sort_values(["video", "frame", "face"]).index.to_numpy()
    frames, emb = frames.iloc[order], emb[order]
    table = feature_table(frames["video"].to_numpy(), frames["frame"].to_numpy(), frames["face"].to_numpy(),
                          frames["score"].to_numpy(), emb, "k", emb.shape[1])
    pq.write_table(table, path, row_group_size=row_group)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ooc")
    videos = make_inputs(root, seed=3, n_families=40)
    for i, b in enumerate(BACKBONES):
        _with_second_faces(root / "features" / f"{b}.parquet", i)
    return root, videos


def test_parts_hold_whole_videos_and_cover_every_row(inputs):
    root, _ = inputs
    path = root / "features" / f"{BACKBONES[0]}.parquet"
    file = FeatureFile(path)
    parts = file.parts(target_rows=20)
    assert len(parts) > 5 and sum(p.rows for p in parts) == file.rows
    seen = {}
    for k, part in enumerate(parts):
        got = read_part(part)
        assert got.file_rows[0] == part.first_row and len(got.frames) == part.rows
        for v in got.frames["video"].unique():
            assert seen.setdefault(v, k) == k, f"video {v} split between parts {seen[v]} and {k}"
    assert len(FeatureFile(path).parts(target_rows=10**9)) == 1


@pytest.mark.parametrize("executor", [ExecutorSpec(), ExecutorSpec("dask", "local:2")], ids=["local", "dask2"])
def test_out_of_core_features_equal_one_pass_in_memory(inputs, executor):
    root, videos = inputs
    names = sorted(videos["video"])
    rules = [Rule.parse(r) for r in ("mean", "max", "topk_mean:3", "logit_mean", "confidence_weighted")]
    path = root / "features" / f"{BACKBONES[1]}.parquet"
    with executor.open() as ex:
        features, means = backbone_videos(path, names, rules, 25, ex, root / "interim/videos.parquet")
    whole = video_table(names, {"b": load_features(path)}, rules, {})
    np.testing.assert_array_equal(features.to_numpy(np.float64), whole.to_numpy(np.float64))
    frames, emb = load_features(path)
    expect = pd.DataFrame(emb).groupby(frames["video"].to_numpy()).mean().reindex(names).to_numpy()
    np.testing.assert_array_equal(means, expect)
    assert (features["n_frames"].to_numpy() == 0).sum() == int((~pd.Index(names).isin(frames["video"])).sum()) > 0


def test_fit_in_small_parts_gives_the_one_part_predictions(inputs, tmp_path):
    root, _ = inputs
    config = load_config()
    config["ensemble"]["lightgbm"]["features"] = "all"       # the PCA of mean embeddings is used too
    outs = []
    for rows in (10**9, 13):
        config["ensemble"]["rows_per_task"] = rows
        out, _ = run_fit(config, root / "interim", root / "features", tmp_path / f"p{rows}", tmp_path / f"m{rows}",
                         BACKBONES)
        outs.append(out)
    pd.testing.assert_frame_equal(outs[0], outs[1], rtol=1e-9, atol=1e-12)


def test_unsorted_file_reads_as_fewer_parts_with_the_same_features(inputs, tmp_path):
    root, videos = inputs
    path = root / "features" / f"{BACKBONES[0]}.parquet"
    table = pq.read_table(path)
    shuffled = tmp_path / "shuffled.parquet"
    pq.write_table(table.take(np.random.default_rng(0).permutation(table.num_rows)), shuffled, row_group_size=50)
    assert len(FeatureFile(shuffled).parts(20)) == 1
    names, rules = sorted(videos["video"]), [Rule.parse("mean"), Rule.parse("median")]
    a, _ = backbone_videos(path, names, rules, 20, ExecutorSpec().open(), Path("videos.parquet"))
    b, _ = backbone_videos(shuffled, names, rules, 20, ExecutorSpec().open(), Path("videos.parquet"))
    pd.testing.assert_frame_equal(a, b)


def test_float16_embeddings_read_as_float32(tmp_path):
    emb = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    table = feature_table(["a", "a", "b", "b"], [0, 1, 0, 1], [1, 1, 1, 1], np.full(4, 0.5, np.float32), emb, "k", 3,
                          dtype="float16")
    assert table.schema.field("embedding").type.value_type == pa.float16()
    pq.write_table(table, tmp_path / "h.parquet")
    _, got = load_features(tmp_path / "h.parquet")
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, emb.astype(np.float16).astype(np.float32))
    assert FeatureFile(tmp_path / "h.parquet").dim == 3


def test_a_bad_row_in_a_later_part_is_named_by_its_file_row(inputs, tmp_path):
    root, videos = inputs
    table = pq.read_table(root / "features" / f"{BACKBONES[0]}.parquet")
    bad_row = table.num_rows - 3
    score = table.column("score").to_numpy().copy()
    score[bad_row] = 1.5
    path = tmp_path / "bad.parquet"
    pq.write_table(table.set_column(3, "score", pa.array(score)), path, row_group_size=ROW_GROUP)
    with pytest.raises(DataError, match=rf"bad.parquet: row {bad_row} .*score = 1.5"):
        backbone_videos(path, sorted(videos["video"]), [Rule.parse("mean")], 20, ExecutorSpec().open(),
                        Path("videos.parquet"))
    unknown = table.set_column(0, "video", pa.array(["zzz.mp4" if i == bad_row else v for i, v in
                                                     enumerate(table.column("video").to_pylist())]))
    pq.write_table(unknown, path, row_group_size=ROW_GROUP)
    with pytest.raises(DataError, match=rf"row {bad_row} names video 'zzz.mp4', which videos.parquet does not list"):
        backbone_videos(path, sorted(videos["video"]), [Rule.parse("mean")], 20, ExecutorSpec().open(),
                        Path("videos.parquet"))


def test_a_column_before_video_does_not_move_the_statistics_read(inputs, tmp_path):
    """The cuts use the Parquet leaf named ``video``, not the Arrow field index (a struct has several leaves)."""
    root, videos = inputs
    table = pq.read_table(root / "features" / f"{BACKBONES[0]}.parquet")
    meta = pa.array([{"a": i, "b": str(i)} for i in range(table.num_rows)])
    path = tmp_path / "struct.parquet"
    pq.write_table(table.add_column(0, "meta", meta), path, row_group_size=ROW_GROUP)
    names, rules = sorted(videos["video"]), [Rule.parse("mean")]
    a, _ = backbone_videos(path, names, rules, 5, ExecutorSpec().open(), Path("videos.parquet"))
    b = video_table(names, {"b": load_features(path)}, rules, {})
    np.testing.assert_array_equal(a.to_numpy(np.float64), b.to_numpy(np.float64))


def test_a_repeated_video_column_and_float16_overflow_are_refused(inputs, tmp_path):
    root, _ = inputs
    table = pq.read_table(root / "features" / f"{BACKBONES[0]}.parquet")
    path = tmp_path / "twice.parquet"
    pq.write_table(table.append_column("video", table.column("video")), path)
    with pytest.raises(DataError, match="column 'video' appears more than once"):
        FeatureFile(path)
    with pytest.raises(DataError, match="do not fit float16"):
        feature_table(["a"], [0], [1], [0.5], np.array([[7e4]]), "k", 1, dtype="float16")


@pytest.mark.parametrize("address", ["tcp://:", "tcp://[::1", "inproc://x", "ucx://127.0.0.1:1",
                                     "tls://127.0.0.1:1", "tcp://host:99999"])
def test_scheduler_addresses_dask_cannot_use_are_refused_up_front(address):
    with pytest.raises(DataError, match="expected tcp://host:port or local:N"):
        ExecutorSpec.parse("dask", address)


def test_a_bad_row_found_on_a_dask_worker_is_one_line(inputs, tmp_path):
    from conftest import run_cli

    root, _ = inputs
    for d in ("interim", "features"):
        (tmp_path / d / "x").mkdir(parents=True)
        for f in (root / d).glob("*.parquet"):
            (tmp_path / d / "x" / f.name).write_bytes(f.read_bytes())
    path = tmp_path / "features/x" / f"{BACKBONES[1]}.parquet"
    table = pq.read_table(path)
    score = table.column("score").to_numpy().copy()
    score[-2] = np.nan
    pq.write_table(table.set_column(3, "score", pa.array(score)), path, row_group_size=ROW_GROUP)
    config = tmp_path / "c.toml"
    config.write_text("[ensemble]\nrows_per_task = 20\n")
    res = run_cli("ensemble", "fit", "--backbone", *BACKBONES, "--name", "x", "--interim", str(tmp_path / "interim"),
                  "--features",
                  str(tmp_path / "features"), "--out", str(tmp_path / "pred"), "--models", str(tmp_path / "m"),
                  "--config", str(config), "--executor", "dask", "--scheduler", "local:1", subprocess_run=True)
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert f"row {table.num_rows - 2}" in res.stderr and "score = nan" in res.stderr
    assert not (tmp_path / "pred").exists()
