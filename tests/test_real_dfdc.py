"""Ingestion of the official DFDC metadata.json files in ../shared/dfdc (skipped where absent)."""
import json

import pandas as pd
import pytest

from conftest import run_cli, shared_file

FILES = {  # file: (videos, FAKE, REAL)
    "dfdc_train_sample_videos_metadata.json": (400, 323, 77),
    "dfdc_train_part_0_metadata.json": (1334, 1248, 86),
    "dfdc_train_part_1_metadata.json": (1699, 1591, 108),
}


@pytest.mark.parametrize("name", FILES)
def test_official_metadata_json_is_ingested(tmp_path, name):
    path = shared_file(name)
    res = run_cli("data", "prepare", "--data", str(path), "--name", "real", "--out", str(tmp_path),
                  "--raw", str(tmp_path / "raw"))
    assert res.returncode == 0, res.stderr
    videos = pd.read_parquet(tmp_path / "real/videos.parquet")
    n, fake, real = FILES[name]
    assert (len(videos), int((videos["label"] == 1).sum()), int((videos["label"] == 0).sum())) == (n, fake, real)
    assert set(videos["source_split"]) == {"train"}
    # no face folders beside the real files: every video is listed, kept, and has no frames
    assert (videos["n_frames"] == 0).all()
    assert f"{n} listed videos with no face folder" in res.stderr
    assert videos.groupby("family")["split"].nunique().max() == 1
    assert videos.groupby("family")["fold"].nunique().max() == 1
    fakes = videos[videos["label"] == 1]
    assert (fakes["family"] == fakes["original"]).all()
    assert json.loads((tmp_path / "real/dataset.json").read_text())["n_videos"] == n


def test_train_sample_families_match_the_reference_count(tmp_path):
    path = shared_file("dfdc_train_sample_videos_metadata.json")
    res = run_cli("data", "prepare", "--data", str(path), "--name", "s", "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr
    videos = pd.read_parquet(tmp_path / "s/videos.parquet")
    assert videos["family"].nunique() == 244      # as ../shared/dfdc/README.md reports
    share = videos["split"].value_counts(normalize=True)
    assert abs(share["train"] - 0.5) < 0.05 and abs(share["test"] - 0.2) < 0.05


def test_two_official_parts_merge(tmp_path):
    parts = [shared_file(n) for n in ("dfdc_train_part_0_metadata.json", "dfdc_train_part_1_metadata.json")]
    res = run_cli("data", "prepare", "--data", *map(str, parts), "--name", "both", "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert len(pd.read_parquet(tmp_path / "both/videos.parquet")) == 1334 + 1699
