"""Hostile input, as a new user would give it (issue #10): a one-line error naming the file and the row or key,
exit code 2, nothing written, nothing lost. Cheap: tiny files, no training."""
import json
import multiprocessing
import threading

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from common.atomic import atomic_dir
from common.errors import DataError
from conftest import run_cli, write_video
from data.metadata import read_metadata_csv, read_metadata_json
from extract.cache import feature_table
from test_ensemble import BACKBONES, make_inputs
from test_evaluate import predictions_table, toy_fit

BOM = b"\xef\xbb\xbf"


def one_line_error(res, *words):
    """Exit 2, a single ``error:`` line on stderr holding every word, and no traceback."""
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, res.stderr
    for word in words:
        assert str(word) in errors[0], errors[0]
    return errors[0]


# 1. `cat` of metadata CSVs that each start with a UTF-8 byte-order mark

def test_cat_of_csvs_with_byte_order_marks_drops_every_header(tmp_path):
    part = "filename,split,original,label\n{r}.mp4,train,,REAL\n{f}.mp4,train,{r}.mp4,FAKE\n"
    path = tmp_path / "metadata.csv"
    path.write_bytes(BOM + part.format(r="aaa", f="bbb").encode() + BOM + part.format(r="ccc", f="ddd").encode())
    entries = read_metadata_csv(path)
    assert [(e.video, e.label) for e in entries] == [("aaa.mp4", 0), ("bbb.mp4", 1), ("ccc.mp4", 0), ("ddd.mp4", 1)]


# 2. a labelled part and an unlabelled folder in one prepare

def test_a_folder_without_metadata_next_to_a_labelled_part_is_the_unlabeled_split(tmp_path):
    labelled, unlabelled = tmp_path / "labelled", tmp_path / "test_videos"
    rows = ["filename,split,original,label"]
    for f in range(6):
        write_video(labelled, f"real{f}", [0, 10])
        write_video(labelled, f"fake{f}", [0, 10])
        rows += [f"real{f}.mp4,train,,REAL", f"fake{f}.mp4,train,real{f}.mp4,FAKE"]
    (labelled / "metadata.csv").write_text("\n".join(rows) + "\n")
    for k in range(3):
        write_video(unlabelled, f"new{k}", [0, 10, 20])
    res = run_cli("data", "prepare", "--data", str(labelled), str(unlabelled), "--name", "mixed",
                  "--out", str(tmp_path / "interim"))
    assert res.returncode == 0, res.stderr
    assert "not listed" not in res.stderr
    videos = pd.read_parquet(tmp_path / "interim/mixed/videos.parquet").set_index("video")
    new = videos.loc[[f"new{k}.mp4" for k in range(3)]]
    assert (new["split"] == "unlabeled").all() and new["label"].isna().all() and (new["n_frames"] == 3).all()
    assert videos.drop(new.index)["label"].notna().all() and len(videos) == 15


def test_an_unlabelled_part_of_one_video_folder_is_read_not_descended_into(tmp_path):
    labelled, single = tmp_path / "labelled", tmp_path / "single"
    write_video(labelled, "real0", [0])
    write_video(labelled, "fake0", [0])
    (labelled / "metadata.csv").write_text("filename,label,original\nreal0.mp4,REAL,\nfake0.mp4,FAKE,real0.mp4\n")
    write_video(single, "onlyone", [0, 10])
    res = run_cli("data", "prepare", "--data", str(labelled), str(single), "--name", "one",
                  "--out", str(tmp_path / "interim"))
    assert res.returncode == 0, res.stderr
    videos = pd.read_parquet(tmp_path / "interim/one/videos.parquet").set_index("video")
    assert videos.loc["onlyone.mp4", "split"] == "unlabeled" and videos.loc["onlyone.mp4", "n_frames"] == 2


# 3. config values out of range stop the command before anything is written

@pytest.mark.parametrize("text, words", [
    ("[evaluate]\nsubmission_eps = 0.7\n", "submission_eps = 0.7"),
    ("seed = 1.5\n", "seed = 1.5"),
    ("seed = 'abc'\n", "seed = 'abc'"),
])
def test_bad_config_values_stop_submission_before_writing(tmp_path, text, words):
    predictions_table(tmp_path)
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    out = tmp_path / "sub.csv"
    res = run_cli("evaluate", "submission", "--name", "toy", "--predictions", str(tmp_path / "data/predictions"),
                  "--out", str(out), "--config", str(cfg))
    one_line_error(res, cfg, words)
    assert not out.exists()


def test_lightgbm_key_of_the_wrong_type_stops_ensemble_fit(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[ensemble.lightgbm]\nnum_leaves = \"four\"\n")
    res = run_cli("ensemble", "fit", "--config", str(cfg), "--interim", str(tmp_path / "i"))
    one_line_error(res, cfg, "[ensemble.lightgbm]", "num_leaves = 'four'")


# 4. NaN, inf or values outside [0, 1] in a predictions table

@pytest.mark.parametrize("value", [np.nan, np.inf, 1.5, -0.1])
def test_report_and_submission_refuse_a_non_probability_naming_row_and_video(tmp_path, value):
    table = predictions_table(tmp_path)
    path = tmp_path / "data/predictions/toy/videos.parquet"
    table.loc[7, "stack/good"] = value
    table.to_parquet(path, index=False)
    reports = tmp_path / "reports"
    res = run_cli("evaluate", "report", "--name", "toy", "--predictions", str(tmp_path / "data/predictions"),
                  "--out", str(reports))
    one_line_error(res, path, "row 7", table.loc[7, "video"], "stack/good")
    assert not reports.exists()
    out = tmp_path / "sub.csv"
    res = run_cli("evaluate", "submission", "--name", "toy", "--predictions", str(tmp_path / "data/predictions"),
                  "--method", "stack/good", "--out", str(out))
    one_line_error(res, path, "row 7", table.loc[7, "video"])
    assert not out.exists()


# 5. NaN, inf or 1.5 frame scores in a feature file

@pytest.mark.parametrize("value", [np.nan, np.inf, 1.5])
def test_ensemble_fit_refuses_a_bad_frame_score_naming_file_and_row(tmp_path, value):
    make_inputs(tmp_path / "ds")
    for stage in ("interim", "features"):          # as data/interim/x and data/features/x
        (tmp_path / stage).mkdir()
        (tmp_path / stage / "x").symlink_to(tmp_path / "ds" / stage)
    path = tmp_path / "features/x" / f"{BACKBONES[0]}.parquet"
    t = pq.read_table(path)
    score = t.column("score").to_numpy().copy()
    score[5] = value
    emb = np.stack(t.column("embedding").to_numpy(zero_copy_only=False))
    pq.write_table(feature_table(t.column("video").to_numpy(zero_copy_only=False), t.column("frame").to_numpy(),
                                 t.column("face").to_numpy(), score, emb, "k", emb.shape[1]), path)
    cfg = tmp_path / "two.toml"        # the feature files' names by --backbone: the config's are checked backbones
    cfg.write_text("")
    res = run_cli("ensemble", "fit", "--config", str(cfg), "--backbone", *BACKBONES, "--name", "x",
                  "--interim", str(tmp_path / "interim"),
                  "--features", str(tmp_path / "features"), "--out", str(tmp_path / "pred"),
                  "--models", str(tmp_path / "models"))
    one_line_error(res, path, "row 5", "score")
    assert not (tmp_path / "pred").exists() and not (tmp_path / "models").exists()


# 6. a folder where a file is expected

def test_a_folder_where_a_file_is_expected_is_one_line(tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    labels = tmp_path / "labels.csv"
    labels.write_text("filename,label\na.mp4,1\nb.mp4,0\n")
    sub = tmp_path / "sub.csv"
    sub.write_text("filename,label\na.mp4,0.9\nb.mp4,0.2\n")
    cases = [
        ("evaluate", "score", str(folder), "--labels", str(labels)),
        ("evaluate", "score", str(sub), "--labels", str(folder)),
        ("evaluate", "validate", str(folder), "--sample", str(sub)),
        ("evaluate", "validate", str(sub), "--sample", str(folder)),
        ("ensemble", "blend", "--predictions", str(folder), "--labels", str(labels), "--out", str(tmp_path / "b")),
        ("ensemble", "blend", "--predictions", str(sub), "--labels", str(folder), "--out", str(tmp_path / "b")),
        ("data", "prepare", "--data", str(tmp_path), "--name", "x", "--config", str(folder)),
    ]
    for args in cases:
        one_line_error(run_cli(*args), folder, "is a folder")
    predictions_table(tmp_path)
    res = run_cli("evaluate", "submission", "--name", "toy", "--predictions", str(tmp_path / "data/predictions"),
                  "--out", str(folder))
    one_line_error(res, folder, "is a folder")
    assert list(folder.iterdir()) == []


# 8. metadata filenames that are paths

@pytest.mark.parametrize("name", ["../../../etc/passwd", "..", "sub/dir.mp4", "..\\\\x.mp4"])
def test_metadata_filenames_must_be_plain_names(tmp_path, name):
    csv = tmp_path / "metadata.csv"
    csv.write_text(f"filename,label\nok.mp4,REAL\n{name},FAKE\n")
    with pytest.raises(DataError, match=r"metadata.csv:3: filename .* is not a plain file name"):
        read_metadata_csv(csv)
    js = tmp_path / "metadata.json"
    js.write_text(json.dumps({"ok.mp4": {"label": "REAL"}, "x.mp4": {"label": "FAKE", "original": name}}))
    with pytest.raises(DataError, match=r"metadata.json: entry 'x.mp4': original .* is not a plain file name"):
        read_metadata_json(js)


def test_prepare_refuses_a_path_in_metadata_and_writes_nothing(tmp_path):
    root = tmp_path / "faces"
    write_video(root, "a", [0])
    (root / "metadata.csv").write_text("filename,label\na.mp4,REAL\n../../etc/passwd,FAKE\n")
    res = run_cli("data", "prepare", "--data", str(root), "--name", "p", "--out", str(tmp_path / "interim"))
    one_line_error(res, "metadata.csv:3", "../../etc/passwd")
    assert not (tmp_path / "interim").exists() or not any((tmp_path / "interim").iterdir())


# 9. two processes writing one dataset name

def _write_version(target: str, version: int, files: int) -> None:
    for _ in range(5):
        with atomic_dir(target) as tmp:
            for i in range(files):
                (tmp / f"part{i}.txt").write_text(f"{version}\n")


def test_concurrent_writers_of_one_folder_never_collide_or_leave_it_missing(tmp_path):
    target = tmp_path / "dataset"
    _write_version(str(target), -1, 20)
    missing, stop = [], threading.Event()

    def watch():
        while not stop.is_set():
            if not target.is_dir():
                missing.append(True)

    watcher = threading.Thread(target=watch)
    watcher.start()
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_write_version, args=(str(target), v, 20)) for v in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    stop.set()
    watcher.join()
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert not missing, "the target was missing while a writer replaced it"
    versions = {(target / f"part{i}.txt").read_text() for i in range(20)}
    assert len(versions) == 1 and versions.pop().strip() in {"0", "1", "2", "3"}     # one writer's whole folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset"]                   # no .old-, .tmp- or lock left


# no traceback anywhere: every case above, through the command line

def test_a_bad_dataset_name_and_a_missing_config_are_one_line(tmp_path):
    for stage, command in (("data", "prepare"), ("ensemble", "fit"), ("evaluate", "report")):
        extra = ["--data", str(tmp_path)] if command == "prepare" else []
        one_line_error(run_cli(stage, command, *extra, "--name", "../x"), "dataset name '../x'")
        one_line_error(run_cli(stage, command, *extra, "--config", str(tmp_path / "none.toml")),
                       tmp_path / "none.toml", "not found")


# found by trying every command as a hostile user: damaged tables between stages

def _tables(tmp_path):
    """A prepared dataset x (interim tables) and its features, as the ensemble stage reads them."""
    make_inputs(tmp_path / "ds")
    for stage in ("interim", "features"):
        (tmp_path / stage).mkdir()
        (tmp_path / stage / "x").symlink_to(tmp_path / "ds" / stage)
    cfg = tmp_path / "two.toml"        # the feature files' names by --backbone: the config's are checked backbones
    cfg.write_text("")
    return tmp_path / "interim/x/videos.parquet", cfg


def _fit(tmp_path, cfg):
    return run_cli("ensemble", "fit", "--config", str(cfg), "--backbone", *BACKBONES, "--name", "x",
                   "--interim", str(tmp_path / "interim"),
                   "--features", str(tmp_path / "features"), "--out", str(tmp_path / "pred"),
                   "--models", str(tmp_path / "models"))


@pytest.mark.parametrize("damage, words", [
    (lambda v: v.assign(label=v["label"].astype("float").where(v.index != 4, 7.0)), "row 4"),
    (lambda v: v.drop(columns="family"), "missing column(s) family"),
    (lambda v: pd.concat([v, v.iloc[[2]]]), "repeats an earlier row's video"),
    (lambda v: v.assign(fold=v["fold"].astype("float").where(v.index != 3, np.nan)), "row 3"),
    (lambda v: v.assign(n_frames=v["n_frames"].astype(str)), "column 'n_frames'"),
    (lambda v: v.assign(split=v["split"].where(v.index != 1, "validation")), "split 'validation'"),
    (None, "not a readable Parquet videos table"),
])
def test_ensemble_fit_refuses_a_damaged_videos_table(tmp_path, damage, words):
    path, cfg = _tables(tmp_path)
    if damage is None:
        path.write_bytes(b"PAR1 garbage")
    else:
        damage(pd.read_parquet(path)).to_parquet(path, index=False)
    one_line_error(_fit(tmp_path, cfg), path, words)
    assert not (tmp_path / "pred").exists() and not (tmp_path / "models").exists()


def test_ensemble_fit_refuses_repeated_feature_rows(tmp_path):
    _, cfg = _tables(tmp_path)
    path = tmp_path / "features/x" / f"{BACKBONES[1]}.parquet"
    t = pq.read_table(path)
    pq.write_table(t.take(list(range(t.num_rows)) + [0]).replace_schema_metadata(t.schema.metadata), path)
    one_line_error(_fit(tmp_path, cfg), path, "repeats an earlier row's video/frame/face")


def test_report_checks_every_column_it_reads_before_writing(tmp_path):
    predictions_table(tmp_path)
    folder = tmp_path / "data/predictions/toy"
    table = pd.read_parquet(folder / "videos.parquet")
    cases = [(table.assign(n_frames=table["n_frames"].astype(float).where(table.index != 2, np.nan)), None, "row 2"),
             (pd.concat([table, table.iloc[[5]]]), None, "repeats an earlier row's video"),
             (table.assign(video=table["video"].where(table.index != 1, "a/../b.mp4")), None, "not a plain file name"),
             (table, {"prior": "high"}, "prior = 'high'")]
    for damaged, fit, words in cases:
        damaged.to_parquet(folder / "videos.parquet", index=False)
        (folder / "fit.json").write_text(json.dumps(fit) if fit else toy_fit("blend/mean"))
        res = run_cli("evaluate", "report", "--name", "toy", "--predictions", str(tmp_path / "data/predictions"),
                      "--out", str(tmp_path / "reports"))
        one_line_error(res, words)
        assert not (tmp_path / "reports").exists()


def test_kaggle_files_with_a_trailing_comma_deep_json_and_a_blend_given_one_file_twice(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("filename,label\na.mp4,1\nb.mp4,0\nc.mp4,1\n")
    sub = tmp_path / "sub.csv"
    sub.write_text("filename,label\na.mp4,0.5,\nb.mp4,0.2\nc.mp4,0.9\n")
    res = run_cli("evaluate", "score", str(sub), "--labels", str(labels))
    assert "Traceback" not in res.stderr and res.returncode in (0, 2), res.stderr
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    one_line_error(run_cli("evaluate", "score", str(sub), "--labels", str(deep)), deep, "nested too deeply")
    good = tmp_path / "good.csv"
    good.write_text("filename,label\na.mp4,0.5\nb.mp4,0.2\nc.mp4,0.9\n")
    one_line_error(run_cli("ensemble", "blend", "--predictions", str(good), str(good), "--labels", str(labels),
                           "--out", str(tmp_path / "b")), "given twice")
    one_line_error(run_cli("ensemble", "blend", "--predictions", str(good), "--labels", str(labels),
                           "--out", str(tmp_path / "b")), labels, "families")
    assert not (tmp_path / "b").exists()


def test_crop_names_beyond_the_table_types_and_repeated_crops(tmp_path):
    root = tmp_path / "faces"
    folder = write_video(root, "v", [0, 10])
    (folder / "0.png").rename(folder / "00.png")
    write_video(root, "v", [0])                                     # 0.png and 00.png: one crop, frame 0
    (folder / "3000000000.png").write_bytes((folder / "10.png").read_bytes())
    (folder / "0_99999.png").write_bytes((folder / "10.png").read_bytes())
    res = run_cli("data", "prepare", "--data", str(root), "--name", "c", "--out", str(tmp_path / "interim"))
    assert res.returncode == 0, res.stderr
    frames = pd.read_parquet(tmp_path / "interim/c/frames.parquet")
    assert sorted(zip(frames["frame"], frames["face"])) == [(0, 1), (10, 1)]
    assert "3000000000.png" in res.stderr and "00.png" in res.stderr


def test_a_seed_beyond_what_the_libraries_take_is_a_config_error(tmp_path):
    cfg = tmp_path / "seed.toml"
    cfg.write_text(f"seed = {2**32}\n")
    one_line_error(run_cli("data", "prepare", "--data", str(tmp_path), "--config", str(cfg)), cfg, "seed = 4294967296")


def test_a_video_named_like_a_hidden_or_parent_folder_is_refused(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "..mp4").write_bytes(b"\x00" * 64)
    res = run_cli("data", "faces", "--videos", str(videos), "--out", str(tmp_path / "out"), subprocess_run=False)
    one_line_error(res, videos / "..mp4", "must not start with '.'")
    assert not (tmp_path / "out").exists()


def test_blend_videos_need_labels_and_features(tmp_path):
    path, cfg = _tables(tmp_path)
    videos = pd.read_parquet(path)
    blend_row = int(np.flatnonzero(videos["split"].to_numpy() == "blend")[0])
    videos.assign(label=videos["label"].where(videos.index != blend_row, pd.NA)).to_parquet(path, index=False)
    one_line_error(_fit(tmp_path, cfg), f"row {blend_row}", "blend split without a label")
    make_inputs(tmp_path / "again")
    (tmp_path / "again/interim/videos.parquet").replace(path)
    feature = tmp_path / "features/x" / f"{BACKBONES[0]}.parquet"
    t = pq.read_table(feature)
    pq.write_table(t.slice(0, 0), feature)
    one_line_error(_fit(tmp_path, cfg), feature, "no frame of any blend-split video")


def test_feature_rows_in_any_order_give_the_sorted_result(tmp_path):
    from extract.cache import load_features

    make_inputs(tmp_path)
    path = tmp_path / "features" / f"{BACKBONES[0]}.parquet"
    frames, emb = load_features(path)
    t = pq.read_table(path)
    shuffled = tmp_path / "shuffled.parquet"
    pq.write_table(t.take(np.random.default_rng(0).permutation(t.num_rows)), shuffled)
    frames2, emb2 = load_features(shuffled)
    pd.testing.assert_frame_equal(frames, frames2)
    np.testing.assert_array_equal(emb, emb2)


def test_two_listed_videos_sharing_one_face_folder_are_refused(tmp_path):
    root = tmp_path / "faces"
    write_video(root, "abc", [0])
    (root / "metadata.csv").write_text("filename,label\nabc.mp4,REAL\nabc.avi,FAKE\n")
    res = run_cli("data", "prepare", "--data", str(root), "--name", "s", "--out", str(tmp_path / "interim"))
    one_line_error(res, "metadata.csv:2", "metadata.csv:3", "share the face folder 'abc'")


@pytest.mark.parametrize("text, words", [
    ("filename,label,label\na.mp4,0.5,0.9\nb.mp4,0.2,0.1\n", "'label' appears more than once"),
    ("filename,label\na.mp4,0.5,\nb.mp4,0.2\n", "malformed CSV"),
])
def test_submission_files_with_a_repeated_column_or_extra_fields(tmp_path, text, words):
    labels = tmp_path / "labels.csv"
    labels.write_text("filename,label\na.mp4,1\nb.mp4,0\n")
    sub = tmp_path / "sub.csv"
    sub.write_text(text)
    one_line_error(run_cli("evaluate", "score", str(sub), "--labels", str(labels)), sub, words)
    one_line_error(run_cli("evaluate", "validate", str(sub), "--sample", str(labels)), sub, words)
