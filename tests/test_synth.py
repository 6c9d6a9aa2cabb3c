"""The embedded DFDC-like dataset: layout, determinism, resume and the traces each method leaves."""
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from common.config import load_config
from conftest import run_cli
from data.render import inner_mask, render
from data.settings import METHODS, load_settings
from data.synth import identity, make_plan, pose, swap_frame

QUIRKY = str(Path(__file__).parent / "configs" / "quirky.toml")
FLAGS = ["--videos", "24", "--frames", "6", "--size", "64", "--seed", "3", "--config", QUIRKY, "--workers", "1"]


def tree_digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "ds"
    res = run_cli("data", "synth", "--out", str(out), *FLAGS)
    assert res.returncode == 0, res.stderr
    return out


def test_layout_and_metadata_look_like_dfdc(synth_dir):
    meta = pd.read_csv(synth_dir / "metadata.csv", keep_default_na=False)
    assert list(meta.columns) == ["filename", "split", "original", "label", "method"]
    assert len(meta) == 24 and meta["filename"].str.fullmatch(r"[a-z]{10}\.mp4").all()
    fake = meta[meta["label"] == "FAKE"]
    real = meta[meta["label"] == "REAL"]
    assert 0.75 <= len(fake) / len(meta) <= 0.9
    assert fake["original"].isin(real["filename"]).all() and (real["original"] == "").all()
    assert set(fake["method"]) == set(METHODS) and (real["method"] == "").all()
    folders = {p.name for p in synth_dir.iterdir() if p.is_dir()}
    listed = {f[:-4] for f in meta["filename"]}
    assert folders <= listed and len(listed - folders) == 2   # 10 % of 24 listed videos have no folder
    counts = [len(list((synth_dir / s).glob("*.png"))) for s in sorted(folders)]
    assert min(counts) >= 1 and len(set(counts)) > 1          # variable frame counts
    extra = sorted(synth_dir.glob("*/*_2.png"))
    assert extra and all((p.parent / p.name.replace("_2", "")).exists() for p in extra)
    with_extra = {p.parent.name for p in extra}
    assert 0 < len(with_extra) < len(folders)


def test_quirks_at_default_rates():
    plans = make_plan(load_settings(load_config()).synth)
    assert len(plans) == 600 and sum(p.label for p in plans) == 500
    assert sum(p.missing for p in plans) == 6
    assert 0.05 < np.mean([bool(p.second_face) for p in plans]) < 0.3
    gaps = [np.diff(p.frames).max() for p in plans if len(p.frames) > 1]
    assert max(gaps) > 10 and min(gaps) == 10                 # some frames have no face, most do


def test_output_is_deterministic_and_resumes_after_a_kill(synth_dir, tmp_path):
    again = tmp_path / "again"
    assert run_cli("data", "synth", "--out", str(again), *FLAGS).returncode == 0
    assert tree_digest(again) == tree_digest(synth_dir)
    # a killed run: some videos missing, one half-written temporary folder, no metadata.csv yet
    for folder in sorted(p for p in again.iterdir() if p.is_dir())[:5]:
        shutil.rmtree(folder)
    (again / ".tmp-halfdone").mkdir()
    (again / ".tmp-halfdone" / "0.png").write_bytes(b"partial")
    (again / "metadata.csv").unlink()
    assert run_cli("data", "synth", "--out", str(again), *FLAGS).returncode == 0
    assert tree_digest(again) == tree_digest(synth_dir)
    other = tmp_path / "other"
    assert run_cli("data", "synth", "--out", str(other), *FLAGS, "--seed", "4").returncode == 0
    assert tree_digest(other) != tree_digest(synth_dir)


def test_other_parameters_need_overwrite(synth_dir, tmp_path):
    out = tmp_path / "ds"
    shutil.copytree(synth_dir, out)
    res = run_cli("data", "synth", "--out", str(out), *FLAGS, "--videos", "12")
    assert res.returncode == 2 and "--overwrite" in res.stderr and res.stderr.count("\n") == 1
    (out / "synth.json").write_text("{ truncated")
    res = run_cli("data", "synth", "--out", str(out), *FLAGS)
    assert res.returncode == 2 and "--overwrite" in res.stderr
    res = run_cli("data", "synth", "--out", str(out), *FLAGS, "--videos", "12", "--overwrite")
    assert res.returncode == 0 and len(pd.read_csv(out / "metadata.csv")) == 12
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("user data")
    res = run_cli("data", "synth", "--out", str(foreign), *FLAGS, "--overwrite")
    assert res.returncode == 2 and (foreign / "keep.txt").exists()


def test_synth_then_prepare_gives_leak_free_tables(synth_dir, tmp_path):
    res = run_cli("data", "prepare", "--data", str(synth_dir), "--name", "s", "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr
    videos = pd.read_parquet(tmp_path / "s/videos.parquet")
    assert videos.groupby("family")["split"].nunique().max() == 1
    assert set(videos["split"]) == {"train", "blend", "test"}
    assert "method" in videos.columns and videos.loc[videos["label"] == 0, "method"].isna().all()
    res = run_cli("data", "sheet", "--name", "s", "--interim", str(tmp_path), "--out", str(tmp_path / "sheet.png"))
    assert res.returncode == 0 and (tmp_path / "sheet.png").stat().st_size > 1000


# --- the traces of each manipulation method, on noise-free renders -------------------------------

@pytest.fixture(scope="module")
def family():
    params = load_settings(load_config()).synth.replace(size=96)
    plans = make_plan(params)
    fakes = {p.method: p for p in plans if p.label}
    target = identity(params, 0)
    source = identity(params, 1)
    return params, fakes, target, source, pose(params, 0, 40)


def highpass_energy(img, mask):
    g = img.mean(-1)
    lap = 4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
    return float((lap**2 * mask[1:-1, 1:-1]).sum() / mask[1:-1, 1:-1].sum())


@pytest.mark.parametrize("method", METHODS)
def test_a_swap_changes_the_inner_face_only(family, method):
    params, fakes, target, source, base = family
    rng = np.random.default_rng(0)
    original = render(target, base, params.size)
    fake = swap_frame(params, fakes[method], target, source, base, 0.8, rng)
    mask = inner_mask(target, base, params.size, 0.06)
    outside = mask == 0
    # outside the (slightly dilated) swap region the frame is the original's
    dilated = inner_mask(target, base.shifted(0, 0, 1.25), params.size, 0.1) == 0
    assert np.abs(fake - original)[dilated].max() < 1e-6
    assert np.abs(fake - original)[~outside].mean() > 0.01


def test_method_traces_differ(family):
    params, fakes, target, source, base = family
    rng = np.random.default_rng(0)
    mask = inner_mask(target, base, params.size, 0.06) > 0.99
    frame = {m: swap_frame(params, fakes[m], target, source, base, s, rng)
             for m in ("lowres", "upsample") for s in (0.0, 1.0)}
    clean = swap_frame(params, fakes["lowres"], target, source, base, 0.0, rng)
    # lowres removes fine detail inside the swap; upsample adds periodic high-frequency energy
    assert highpass_energy(frame["lowres"], mask) < 0.5 * highpass_energy(clean, mask)
    assert highpass_energy(frame["upsample"], mask) > 2 * highpass_energy(clean, mask)
    # color: the swapped skin drifts away from the target's tone with strength
    c0 = swap_frame(params, fakes["color"], target, source, base, 0.0, rng)[mask].mean(0)
    c1 = swap_frame(params, fakes["color"], target, source, base, 1.0, rng)[mask].mean(0)
    assert np.abs(c1 - c0).max() > 0.03
    # flicker: two frames at the same pose differ inside the swap (random jitter per frame)
    f1 = swap_frame(params, fakes["flicker"], target, source, base, 1.0, np.random.default_rng(1))
    f2 = swap_frame(params, fakes["flicker"], target, source, base, 1.0, np.random.default_rng(2))
    assert np.abs(f1 - f2)[mask].mean() > 0.01
