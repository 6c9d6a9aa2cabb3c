"""`python -m data prepare` on datasets written by other programs, with their real-world problems."""
import json
import zipfile

import pandas as pd
import pytest

from conftest import run_cli, write_png, write_video


def messy_dataset(root):
    """Two parts' metadata joined with `cat` (repeated header, other column order), a `_2` face, a listed
    video without a folder, an empty folder, an unlisted folder, a corrupt crop and a stray file."""
    (root / "metadata.csv").parent.mkdir(parents=True, exist_ok=True)
    (root / "metadata.csv").write_text(
        "filename,split,original,label\n"
        "realaaaaaa.mp4,train,,REAL\n"
        "fakebbbbbb.mp4,train,realaaaaaa.mp4,FAKE\n"
        "fakecccccc.mp4,train,realaaaaaa.mp4,FAKE\n"
        "label,split,filename,original\n"
        "REAL,train,realdddddd.mp4,\n"
        "FAKE,train,fakeeeeeee.mp4,realdddddd.mp4\n"
        "FAKE,train,fakebbbbbb.mp4,realaaaaaa.mp4\n"
        "FAKE,train,nofolderxx.mp4,realdddddd.mp4\n"
        "FAKE,train,emptyfolde.mp4,realdddddd.mp4\n"
        "label,split,filename,original\n")
    write_video(root, "realaaaaaa", [0, 10, 20, 30], extra_faces={10, 20})
    write_video(root, "fakebbbbbb", [0, 10, 20])
    write_video(root, "fakecccccc", [0, 10, 20, 30, 40])
    write_video(root, "realdddddd", [0, 10])
    write_video(root, "fakeeeeeee", [0, 10, 20])
    (root / "emptyfolde").mkdir()
    write_video(root, "unlistedzz", [0])
    (root / "fakecccccc" / "40.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (root / "fakeeeeeee" / "notes.txt").write_text("hello")
    return root


def test_messy_dataset_is_ingested_with_problems_reported(tmp_path):
    root = messy_dataset(tmp_path / "faces")
    res = run_cli("data", "prepare", "--data", str(root), "--name", "messy",
                  "--out", str(tmp_path / "interim"), "--raw", str(tmp_path / "raw"))
    assert res.returncode == 0, res.stderr
    videos = pd.read_parquet(tmp_path / "interim/messy/videos.parquet").set_index("video")
    frames = pd.read_parquet(tmp_path / "interim/messy/frames.parquet")
    assert sorted(videos.index) == sorted(["realaaaaaa.mp4", "fakebbbbbb.mp4", "fakecccccc.mp4", "realdddddd.mp4",
                                           "fakeeeeeee.mp4", "nofolderxx.mp4", "emptyfolde.mp4"])
    assert videos.loc["fakebbbbbb.mp4", "label"] == 1 and videos.loc["realdddddd.mp4", "label"] == 0
    assert videos.loc["fakeeeeeee.mp4", "family"] == "realdddddd.mp4"
    assert videos.loc["realaaaaaa.mp4", ["n_frames", "n_faces_max", "n_crops"]].tolist() == [4, 2, 6]
    assert videos.loc["fakecccccc.mp4", "n_frames"] == 4            # the corrupt 40.png is skipped
    assert videos.loc[["nofolderxx.mp4", "emptyfolde.mp4"], "n_frames"].tolist() == [0, 0]
    assert videos.groupby("family")["split"].nunique().max() == 1
    extra = frames[(frames["video"] == "realaaaaaa.mp4") & (frames["face"] == 2)]
    assert extra["frame"].tolist() == [10, 20] and extra["path"].tolist() == ["realaaaaaa/10_2.png",
                                                                               "realaaaaaa/20_2.png"]
    assert "unlistedzz.mp4" not in set(frames["video"])
    warnings = res.stderr
    for words in ["1 listed videos with no face folder (kept, n_frames = 0): nofolderxx.mp4",
                  "1 folders on disk that are not listed (skipped)", "unlistedzz",
                  "1 unreadable face crops (skipped)", "40.png",
                  "videos with no readable face crop (kept, n_frames = 0): emptyfolde.mp4",
                  "unexpected files in face folders (ignored)", "identical duplicate metadata rows dropped"]:
        assert words in warnings
    assert "dataset messy: 7 videos (5 FAKE" in res.stdout and "2 families" in res.stdout
    manifest = json.loads((tmp_path / "interim/messy/dataset.json").read_text())
    assert manifest["root"] == str(root.resolve()) and manifest["problems"]


def test_prepare_is_deterministic_and_sampling_follows_config(tmp_path):
    root = messy_dataset(tmp_path / "faces")
    cfg = tmp_path / "c.toml"
    cfg.write_text("[sampling]\nframes = 'linspace'\ncount = 2\nfaces = 'first'\n")
    outs = []
    for run in ("a", "b"):
        res = run_cli("data", "prepare", "--data", str(root), "--name", run, "--config", str(cfg),
                      "--out", str(tmp_path / "interim"), "--raw", str(tmp_path / "raw"))
        assert res.returncode == 0, res.stderr
        outs.append([pd.read_parquet(tmp_path / f"interim/{run}/{t}.parquet") for t in ("videos", "frames")])
    for a, b in zip(*outs):
        pd.testing.assert_frame_equal(a, b)
    frames = outs[0][1]
    assert frames.groupby("video").size().max() == 2 and set(frames["face"]) == {1}
    assert frames[frames["video"] == "fakecccccc.mp4"]["frame"].tolist() == [0, 30]


def test_metadata_json_next_to_face_folders_and_unlabelled_folders(tmp_path):
    root = tmp_path / "dfdc_part"
    write_video(root, "aaaaaaaaaa", [0, 1])
    write_video(root, "bbbbbbbbbb", [0])
    (root / "metadata.json").write_text(json.dumps({
        "aaaaaaaaaa.mp4": {"label": "REAL", "split": "train", "original": None},
        "bbbbbbbbbb.mp4": {"label": "FAKE", "split": "train", "original": "aaaaaaaaaa.mp4"}}))
    res = run_cli("data", "prepare", "--data", str(root / "metadata.json"), "--name", "j",
                  "--out", str(tmp_path / "interim"), "--raw", str(tmp_path / "raw"))
    assert res.returncode == 0, res.stderr
    videos = pd.read_parquet(tmp_path / "interim/j/videos.parquet")
    assert videos["label"].tolist() == [0, 1] and videos["n_frames"].tolist() == [2, 1]

    (root / "metadata.json").unlink()   # like Kaggle's test set: folders only, no labels
    res = run_cli("data", "prepare", "--data", str(root), "--name", "u",
                  "--out", str(tmp_path / "interim"), "--raw", str(tmp_path / "raw"))
    assert res.returncode == 0, res.stderr
    videos = pd.read_parquet(tmp_path / "interim/u/videos.parquet")
    assert videos["label"].isna().all() and set(videos["split"]) == {"unlabeled"}
    assert "unlabelled" in res.stderr


def make_part_zip(path, part, rows, folders, members=None):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{part}/metadata.csv", "filename,split,original,label\n" + "".join(r + "\n" for r in rows))
        for stem in folders:
            for frame in (0, 1):
                png = write_png(path.parent / "tmp.png", seed=frame)
                zf.write(png, f"{part}/{stem}/{frame}.png")
        for name, data in (members or {}).items():
            zf.writestr(name, data)
    return path


def test_several_part_zips_are_extracted_and_merged(tmp_path):
    z0 = make_part_zip(tmp_path / "deepfake-detection-faces-part-0.zip", "part0",
                       ["rrrrrrrrrr.mp4,train,,REAL", "ffffffffff.mp4,train,rrrrrrrrrr.mp4,FAKE"],
                       ["rrrrrrrrrr", "ffffffffff"])
    z1 = make_part_zip(tmp_path / "deepfake-detection-faces-part-1.zip", "part1",
                       ["gggggggggg.mp4,train,rrrrrrrrrr.mp4,FAKE"], ["gggggggggg"])
    args = ["data", "prepare", "--data", str(z0), str(z1), "--name", "zips",
            "--out", str(tmp_path / "interim"), "--raw", str(tmp_path / "raw")]
    res = run_cli(*args)
    assert res.returncode == 0, res.stderr
    videos = pd.read_parquet(tmp_path / "interim/zips/videos.parquet")
    assert sorted(videos["video"]) == ["ffffffffff.mp4", "gggggggggg.mp4", "rrrrrrrrrr.mp4"]
    assert set(videos["family"]) == {"rrrrrrrrrr.mp4"} and videos["n_frames"].tolist() == [2, 2, 2]
    extracted = tmp_path / "raw/zips/deepfake-detection-faces-part-0/part0/rrrrrrrrrr/0.png"
    assert extracted.exists()
    mtime = extracted.stat().st_mtime_ns
    assert run_cli(*args).returncode == 0
    assert extracted.stat().st_mtime_ns == mtime   # the second run reuses the extraction


@pytest.mark.parametrize("member, words", [
    ("../evil.txt", "points outside the target folder"),
    ("part0/../../evil.txt", "points outside the target folder"),
    ("/tmp/evil.txt", "absolute path"),
    ("C:/evil.txt", "absolute path"),
    ("part0\\..\\..\\evil.txt", "points outside the target folder"),     # Windows separators
])
def test_zip_slip_is_refused_and_nothing_is_written(tmp_path, member, words):
    z = make_part_zip(tmp_path / "bad.zip", "part0", ["rrrrrrrrrr.mp4,train,,REAL"], ["rrrrrrrrrr"],
                      members={member: "owned"})
    res = run_cli("data", "prepare", "--data", str(z), "--name", "bad",
                  "--out", str(tmp_path / "interim"), "--raw", str(tmp_path / "raw"))
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and str(z) in res.stderr and words in res.stderr
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "raw/evil.txt").exists()
    assert not list((tmp_path / "raw").rglob("*.png")) and not (tmp_path / "interim").exists()


def test_symlink_in_zip_is_refused(tmp_path):
    z = tmp_path / "link.zip"
    with zipfile.ZipFile(z, "w") as zf:
        info = zipfile.ZipInfo("part0/link")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
    res = run_cli("data", "prepare", "--data", str(z), "--name", "l",
                  "--out", str(tmp_path / "interim"), "--raw", str(tmp_path / "raw"))
    assert res.returncode == 2 and "symbolic link" in res.stderr and res.stderr.count("\n") == 1
    assert not (tmp_path / "interim").exists() and not list((tmp_path / "raw").rglob("link"))


@pytest.mark.parametrize("metadata, words", [
    ("filename,split,original,label\nrrrrrrrrrr.mp4,train,,REEL\n", "metadata.csv:2: label 'REEL'"),
    ("filename,split,original,label\nrrrrrrrrrr.mp4,train,,REAL\n"
     "filename,split,original,label\nrrrrrrrrrr.mp4,train,,FAKE\n", "metadata.csv:2 and"),
    ("filename,split,original,label\nrrrrrrrrrr.mp4,train\n", "metadata.csv:2: expected 4 fields"),
])
def test_bad_input_exits_non_zero_with_one_line_and_keeps_previous_output(tmp_path, metadata, words):
    root = tmp_path / "faces"
    write_video(root, "rrrrrrrrrr", [0])
    (root / "metadata.csv").write_text("filename,split,original,label\nrrrrrrrrrr.mp4,train,,REAL\n")
    args = ["data", "prepare", "--data", str(root), "--name", "x",
            "--out", str(tmp_path / "interim"), "--raw", str(tmp_path / "raw")]
    assert run_cli(*args).returncode == 0
    before = (tmp_path / "interim/x/videos.parquet").read_bytes()
    (root / "metadata.csv").write_text(metadata)
    res = run_cli(*args)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1 and words in res.stderr
    assert (tmp_path / "interim/x/videos.parquet").read_bytes() == before
    assert [p.name for p in (tmp_path / "interim").iterdir()] == ["x"]   # no temporary leftovers


def test_missing_data_path_and_strict_mode(tmp_path):
    res = run_cli("data", "prepare", "--data", str(tmp_path / "nope"), "--name", "n",
                  "--out", str(tmp_path / "interim"))
    assert res.returncode == 2 and "DATA path not found" in res.stderr
    root = messy_dataset(tmp_path / "faces")
    res = run_cli("data", "prepare", "--data", str(root), "--name", "s", "--strict",
                  "--out", str(tmp_path / "interim"), "--raw", str(tmp_path / "raw"))
    assert res.returncode == 2 and "--strict" in res.stderr and not (tmp_path / "interim/s").exists()


def prepare_args(tmp_path, *data, name="t"):
    return ["data", "prepare", "--data", *map(str, data), "--name", name,
            "--out", str(tmp_path / "interim"), "--raw", str(tmp_path / "raw")]


@pytest.mark.parametrize("name", ["", "..", "a/b", ".hidden"])
def test_dataset_name_must_be_one_plain_folder_name(tmp_path, name):
    root = messy_dataset(tmp_path / "faces")
    keep = tmp_path / "interim" / "other" / "precious.txt"
    keep.parent.mkdir(parents=True)
    keep.write_text("x")
    res = run_cli(*prepare_args(tmp_path, root, name=name))
    assert res.returncode == 2 and "dataset name" in res.stderr and keep.exists()


def test_unlabelled_rows_of_a_labelled_file_and_unlabelled_originals_are_reported(tmp_path):
    root = tmp_path / "faces"
    write_video(root, "rrrrrrrrrr", [0])
    write_video(root, "ffffffffff", [0])
    (root / "metadata.csv").write_text("filename,split,original,label\nrrrrrrrrrr.mp4,train,,\n"
                                       "ffffffffff.mp4,train,rrrrrrrrrr.mp4,FAKE\n")
    res = run_cli(*prepare_args(tmp_path, root))
    assert res.returncode == 0, res.stderr
    assert "1 listed videos without a label (unlabelled): rrrrrrrrrr.mp4" in res.stderr
    assert "FAKE videos whose original has no label" in res.stderr


def test_output_files_get_ordinary_permissions(tmp_path):
    res = run_cli(*prepare_args(tmp_path, messy_dataset(tmp_path / "faces")))
    assert res.returncode == 0
    out = tmp_path / "interim" / "t"
    assert out.stat().st_mode & 0o755 == 0o755 and (out / "dataset.json").stat().st_mode & 0o644 == 0o644


def test_symlinked_face_folders_stay_inside_the_dataset(tmp_path):
    root = tmp_path / "faces"
    elsewhere = write_video(tmp_path / "disk2", "ffffffffff", [0, 1])
    write_video(root, "rrrrrrrrrr", [0])
    (root / "ffffffffff").symlink_to(elsewhere, target_is_directory=True)
    (root / "metadata.csv").write_text("filename,split,original,label\nrrrrrrrrrr.mp4,train,,REAL\n"
                                       "ffffffffff.mp4,train,rrrrrrrrrr.mp4,FAKE\n")
    res = run_cli(*prepare_args(tmp_path, root))
    assert res.returncode == 0, res.stderr
    frames = pd.read_parquet(tmp_path / "interim/t/frames.parquet")
    assert frames["path"].tolist() == ["rrrrrrrrrr/0.png", "ffffffffff/0.png", "ffffffffff/1.png"]


def test_zips_with_the_same_file_name_are_refused(tmp_path):
    rows, folders = ["rrrrrrrrrr.mp4,train,,REAL"], ["rrrrrrrrrr"]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    za = make_part_zip(tmp_path / "a" / "part.zip", "p", rows, folders)
    zb = make_part_zip(tmp_path / "b" / "part.zip", "p", rows, folders)
    res = run_cli(*prepare_args(tmp_path, za, zb))
    assert res.returncode == 2 and "same file name" in res.stderr and str(zb) in res.stderr


def test_zip_with_a_wrapper_folder_and_windows_separators(tmp_path):
    z = tmp_path / "wrapped.zip"
    png = write_png(tmp_path / "x.png").read_bytes()
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("top\\part9\\metadata.csv", "filename,split,original,label\nrrrrrrrrrr.mp4,train,,REAL\n")
        zf.writestr("top\\part9\\rrrrrrrrrr\\0.png", png)
        zf.writestr("top\\part9\\rrrrrrrrrr\\0_2.png", png)
    res = run_cli(*prepare_args(tmp_path, z))
    assert res.returncode == 0, res.stderr
    videos = pd.read_parquet(tmp_path / "interim/t/videos.parquet")
    assert videos[["video", "label", "n_frames", "n_faces_max"]].values.tolist() == [["rrrrrrrrrr.mp4", 0, 1, 2]]


def test_corrupt_zip_is_one_line_error(tmp_path):
    z = tmp_path / "broken.zip"
    z.write_bytes(b"PK\x03\x04 not really a zip")
    res = run_cli(*prepare_args(tmp_path, z))
    assert res.returncode == 2 and res.stderr == f"error: {z}: not a valid zip file\n"


def test_prepare_runs_the_leak_check_before_writing(tmp_path, monkeypatch, config):
    from common.errors import DataError
    from data import prepare as prepare_module

    def leaky(videos, fractions, folds, seed):
        out = videos.assign(split="train", fold=0)
        out.loc[out.index[0], "split"] = "test"      # split one family
        return out

    monkeypatch.setattr(prepare_module, "assign_splits", leaky)
    root = messy_dataset(tmp_path / "faces")
    with pytest.raises(DataError, match="family leak"):
        prepare_module.prepare([root], "leak", config, out_root=tmp_path / "interim", raw_root=tmp_path / "raw")
    assert not (tmp_path / "interim").exists() or not list((tmp_path / "interim").iterdir())
