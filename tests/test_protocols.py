"""`ensemble protocols` and the report's frame-budget and ablation sections, on a synthetic frame table."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from common.config import load_config
from common.errors import DataError
from common.metrics import log_loss
from conftest import run_cli
from data.sampling import SamplingPolicy
from ensemble import protocols
from ensemble.fit import run_fit
from ensemble.protocols import run_protocols
from ensemble.video_features import frame_budget
from evaluate.protocols import protocol_sections
from evaluate.report import run_report
from test_ensemble import BACKBONES, make_inputs

BUDGETS = [1, 4]


def small_config():
    config = load_config()
    config["extract"]["backbones"] = BACKBONES
    config["ensemble"]["protocols"]["frame_budgets"] = BUDGETS
    config["evaluate"]["bootstrap"] = 200
    config["ensemble"]["nested"] = False     # the nested figure changes blend rows only; these tests score test rows
    return config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("protocols")
    videos = make_inputs(root)
    for b, fps in zip(BACKBONES, (400.0, 100.0)):
        (root / "features" / f"{b}.throughput.json").write_text(json.dumps({"frames_per_s": fps}))
    config = small_config()
    out, fit = run_fit(config, root / "interim", root / "features", root / "pred", root / "models")
    out["stack/chosen"] = out[fit["best_method"]]        # what the nested fit's column holds on test rows
    report = run_protocols(config, root / "interim", root / "features", root / "pred")
    return root, videos, out, report


def test_frame_budget_keeps_what_the_sampling_policy_picks():
    rng = np.random.default_rng(3)
    rows = []
    for v in range(40):
        frames = np.sort(rng.choice(300, rng.integers(1, 40), replace=False))
        for f in frames:
            rows += [(f"v{v:02d}", f, face) for face in range(1, rng.integers(1, 3) + 1)]
    table = pd.DataFrame(rows, columns=["video", "frame", "face"])
    for k in (1, 2, 5, 32):
        keep = frame_budget(table, k)
        policy = SamplingPolicy(frames="linspace", count=k)
        for video, g in table.groupby("video"):
            kept = set(g.loc[keep[g.index], "frame"])
            assert kept == set(policy.select_frames(np.unique(g["frame"])).tolist()), (video, k)
            assert keep[g.index].sum() == g["frame"].isin(kept).sum()      # every face of a kept frame


def test_protocol_tables_refit_every_budget_and_backbone(run):
    root, videos, out, report = run
    budget = pd.read_parquet(root / "pred/frame_budget.parquet")
    most = int(videos["n_frames"].max())
    assert sorted(budget["frames"].unique()) == [0] + [k for k in BUDGETS if k < most]
    assert report["frame_budget"]["budgets"] == [1, 4, 0]
    # every cached crop: the test rows are the fit's own (the nested figure only changes blend rows)
    full = budget[budget["frames"] == 0].reset_index(drop=True)
    test = (out["split"] == "test").to_numpy()
    for method in ["cnn_a/mean", "blend/weighted", "stack/logistic", "stack/lightgbm", "stack/chosen"]:
        np.testing.assert_allclose(full.loc[test, method], out.loc[test, method], err_msg=method)
    # at one frame a video's mean rule is the score of its first cached frame (linspace picks index 0)
    one = budget[budget["frames"] == 1].set_index("video")
    frames = pd.read_parquet(root / "features/cnn_a.parquet").sort_values(["video", "frame"])
    first = frames.groupby("video")["score"].first()
    np.testing.assert_allclose(one.loc[first.index, "cnn_a/mean"], first.to_numpy(), rtol=1e-6)
    # the CNN cost: crops per video through each backbone at its measured frames/s
    crops = report["frame_budget"]["crops_per_video"]
    assert crops["1"]["cnn_a"] == pytest.approx(1.0)
    assert report["frame_budget"]["seconds_per_video"]["1"] == pytest.approx(1 / 400 + 1 / 100)
    assert crops["4"]["cnn_a"] < crops["0"]["cnn_a"] <= most


def test_ablation_is_the_fit_on_the_other_backbone(run, tmp_path):
    root, _, _, report = run
    ablation = pd.read_parquet(root / "pred/ablation.parquet")
    assert sorted(ablation["without"].unique()) == sorted(["none", *BACKBONES])
    alone, _ = run_fit(small_config(), root / "interim", root / "features", tmp_path / "pred", tmp_path / "models",
                       ["cnn_b"])
    mine = ablation[ablation["without"] == "cnn_a"].reset_index(drop=True)
    assert mine["cnn_a/mean"].isna().all()
    test = (alone["split"] == "test").to_numpy()
    for method in ["stack/logistic", "stack/lightgbm", "blend/weighted"]:
        np.testing.assert_allclose(mine.loc[test, method], alone.loc[test, method], err_msg=method)
    assert report["ablation"]["chosen"]["cnn_a"] == json.loads((tmp_path / "pred/fit.json").read_text())[
        "chosen"]["method"]


def test_a_killed_run_resumes_with_the_same_tables(run, tmp_path, monkeypatch):
    root = run[0]
    work = tmp_path / "w"
    shutil.copytree(root / "interim", work / "interim")
    shutil.copytree(root / "features", work / "features")
    (work / "pred").mkdir()
    shutil.copy(root / "pred/videos.parquet", work / "pred/videos.parquet")
    real, calls = protocols.fit_variant, []

    def dies_on_the_third(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(protocols, "fit_variant", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        run_protocols(small_config(), work / "interim", work / "features", work / "pred")
    assert not (work / "pred/protocols.json").exists()
    assert len(list((work / "pred/.protocols").glob("*.json"))) == 3         # the key and two variants
    calls.clear()
    monkeypatch.setattr(protocols, "fit_variant", lambda *args: (calls.append(1), real(*args))[1])
    run_protocols(small_config(), work / "interim", work / "features", work / "pred")
    assert len(calls) == 3                                                     # five variants, two kept
    for name in ("frame_budget.parquet", "ablation.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(work / "pred" / name), pd.read_parquet(root / "pred" / name))
    assert not (work / "pred/.protocols").exists()


def test_report_writes_the_protocol_tables_and_figures(run):
    root, _, out, _ = run
    config = small_config()
    run_report(config, root / "pred", root / "reports", "toy")
    budget = pd.read_csv(root / "reports/frame_budget.csv")
    assert list(budget.columns) == ["frames", "all_frames", "method", "role", "chosen_method", "n_videos",
                                    "crops_per_video", "cnn_seconds_per_video", "log_loss", "log_loss_low",
                                    "log_loss_high", "auc", "auc_low", "auc_high", "difference_to_all",
                                    "difference_to_all_low", "difference_to_all_high"]
    test = out[(out["split"] == "test") & out["label"].notna()]
    submitted = budget[(budget["role"] == "submitted") & budget["all_frames"]].iloc[0]
    assert submitted["log_loss"] == pytest.approx(log_loss(test["label"].to_numpy(float), test["stack/chosen"]))
    assert (budget["log_loss_low"] <= budget["log_loss"]).all() and (budget["log_loss"] <= budget["log_loss_high"]).all()
    assert set(budget.loc[budget["role"] == "best rule", "method"].str.split("/").str[0]) == set(BACKBONES)
    every = budget[budget["all_frames"]].set_index("method")["log_loss"]
    np.testing.assert_allclose(budget["difference_to_all"], budget["log_loss"] - every[budget["method"]].to_numpy())
    assert (budget.loc[budget["all_frames"], "difference_to_all"] == 0).all()
    ablation = pd.read_csv(root / "reports/ablation.csv")
    np.testing.assert_allclose(ablation["difference"], ablation["log_loss_without"] - ablation["log_loss_full"])
    assert set(ablation["without"]) == set(BACKBONES) and "stack/chosen" in set(ablation["method"])
    text = (root / "reports/report.md").read_text()
    assert "## Frame budget" in text and "## Backbone ablation" in text
    assert (root / "reports/frame_budget.png").stat().st_size > 0 and (root / "reports/ablation.png").exists()


def test_damaged_protocol_files_are_one_line_and_no_report(run, tmp_path):
    root = run[0]
    pred = tmp_path / "pred"
    shutil.copytree(root / "pred", pred)
    (pred / "protocols.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="protocols.json: expected a JSON object"):
        run_report(small_config(), pred, tmp_path / "r", "toy")
    shutil.copy(root / "pred/protocols.json", pred / "protocols.json")
    table = pd.read_parquet(pred / "frame_budget.parquet")
    table.loc[3, "cnn_b/max"] = np.nan          # a rule column: the best rules are chosen among them
    table.to_parquet(pred / "frame_budget.parquet")
    with pytest.raises(DataError, match=r"frame_budget.parquet: .*row 3.*cnn_b/max"):
        run_report(small_config(), pred, tmp_path / "r", "toy")
    table = pd.read_parquet(root / "pred/frame_budget.parquet")
    table.loc[7, "stack/chosen"] = 1.5
    table.to_parquet(pred / "frame_budget.parquet")
    with pytest.raises(DataError, match=r"frame_budget.parquet: .*row 7.*stack/chosen"):
        run_report(small_config(), pred, tmp_path / "r", "toy")
    assert not (tmp_path / "r/metrics.json").exists()


def test_protocols_cli_errors_are_one_line(run, tmp_path):
    root = run[0]
    flags = ["--interim", str(root / "interim"), "--features", str(root / "features")]
    res = run_cli("ensemble", "protocols", "--name", "toy", *flags, "--out", str(tmp_path))
    assert res.returncode != 0 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "toy" in res.stderr
    (tmp_path / "user.toml").write_text("[ensemble.protocols]\nframe_budgets = [3, 3]\n")
    res = run_cli("ensemble", "protocols", "--name", "pred", *flags, "--out", str(root),
                  "--config", str(tmp_path / "user.toml"))
    assert res.returncode != 0 and "frame_budgets = [3, 3]" in res.stderr and len(res.stderr.splitlines()) == 1
    (root / "features" / "cnn_a.throughput.json").rename(tmp_path / "saved.json")
    try:
        (root / "features" / "cnn_a.throughput.json").write_text('{"frames_per_s": -3}')
        with pytest.raises(DataError, match=r"cnn_a.throughput.json: frames_per_s = -3"):
            protocols.throughput(root / "features", "cnn_a")
    finally:
        (tmp_path / "saved.json").replace(root / "features" / "cnn_a.throughput.json")


@pytest.mark.parametrize("damage, match", [
    (lambda info, t, a: info["frame_budget"].update(chosen=["x"]), r"protocols.json: frame_budget.chosen = \['x'\]"),
    (lambda info, t, a: info["frame_budget"]["seconds_per_video"].update({"0": "x"}),
     r"frame_budget.seconds_per_video.0 = 'x'"),
    (lambda info, t, a: info["frame_budget"].update(most_frames="x"), r"frame_budget.most_frames = 'x'"),
    (lambda info, t, a: info["ablation"].update(chosen=["x"]), r"ablation.chosen = \['x'\]"),
    (lambda info, t, a: info.update(ablation="yes"), r"ablation = 'yes'"),
    (lambda info, t, a: t.__setitem__("frames", t["frames"].replace(BUDGETS[0], -1)),
     r"frame_budget.parquet: row \d+ .*frames = -1"),
    (lambda info, t, a: a.__setitem__("without", a["without"].replace(BACKBONES[0], "vgg")),
     r"ablation.parquet: row \d+ .*without = 'vgg'"),
    (lambda info, t, a: a.drop(a.index[a["without"] == BACKBONES[0]], inplace=True),
     rf"ablation.parquet: no row with without = '{BACKBONES[0]}'"),
])
def test_inconsistent_protocol_files_are_one_line(run, tmp_path, damage, match):
    """protocols.json's entries are checked, and the tables hold the budgets and backbones it lists: a damaged
    record or a stray/missing variant is one line, never a traceback."""
    root = run[0]
    pred = tmp_path / "pred"
    shutil.copytree(root / "pred", pred)
    info = json.loads((pred / "protocols.json").read_text())
    table, abl = pd.read_parquet(pred / "frame_budget.parquet"), pd.read_parquet(pred / "ablation.parquet")
    damage(info, table, abl)
    (pred / "protocols.json").write_text(json.dumps(info))
    table.to_parquet(pred / "frame_budget.parquet", index=False)
    abl.to_parquet(pred / "ablation.parquet", index=False)
    with pytest.raises(DataError, match=match):
        protocol_sections(pred, tmp_path / "r", 20, 0)


def test_a_bad_ablation_table_writes_no_frame_budget_table(run, tmp_path):
    """Both protocol tables are checked before either is written (no half-written report folder)."""
    root = run[0]
    pred = tmp_path / "pred"
    shutil.copytree(root / "pred", pred)
    table = pd.read_parquet(pred / "ablation.parquet")
    table.loc[3, "stack/chosen"] = 2.0
    table.to_parquet(pred / "ablation.parquet", index=False)
    (tmp_path / "r").mkdir()
    with pytest.raises(DataError, match=r"ablation.parquet: row 3 .*stack/chosen"):
        protocol_sections(pred, tmp_path / "r", 20, 0)
    assert not list((tmp_path / "r").iterdir())


def test_sections_this_run_lacks_leave_no_earlier_files(run, tmp_path):
    """Without an ablation (one backbone) the report folder keeps no ablation.csv of an earlier run; without
    protocols.json, no protocol file at all."""
    root = run[0]
    pred, out = tmp_path / "pred", tmp_path / "r"
    shutil.copytree(root / "pred", pred)
    out.mkdir()
    protocol_sections(pred, out, 20, 0)
    assert (out / "ablation.csv").exists() and (out / "ablation.png").exists()
    info = json.loads((pred / "protocols.json").read_text())
    (pred / "protocols.json").write_text(json.dumps({**info, "ablation": None}))
    lines = protocol_sections(pred, out, 20, 0)
    assert sorted(p.name for p in out.iterdir()) == ["frame_budget.csv", "frame_budget.png"]
    assert not any("ablation" in line.lower() for line in lines)
    (pred / "protocols.json").unlink()
    assert protocol_sections(pred, out, 20, 0) == [] and not list(out.iterdir())


def test_a_damaged_or_truncated_variant_is_fitted_again(run, tmp_path, monkeypatch):
    root = run[0]
    work = tmp_path / "w"
    for folder in ("interim", "features"):
        shutil.copytree(root / folder, work / folder)
    (work / "pred").mkdir()
    shutil.copy(root / "pred/videos.parquet", work / "pred/videos.parquet")
    config = small_config()
    config["ensemble"]["protocols"]["ablation"] = False
    run_protocols(config, work / "interim", work / "features", work / "pred")
    expected = pd.read_parquet(work / "pred/frame_budget.parquet")
    protocols_json = (work / "pred/protocols.json").read_text()
    state = work / "pred/.protocols"
    # leave the work folder behind, then damage it: a record without its table, a record that is not JSON
    monkeypatch.setattr(protocols, "_assemble", lambda *args: {})
    run_protocols(config, work / "interim", work / "features", work / "pred")
    monkeypatch.undo()
    # a table truncated by a killed write (the record beside it is whole), and a record that is not JSON
    table = (state / "frames-1.parquet").read_bytes()
    (state / "frames-1.parquet").write_bytes(table[: len(table) // 2])
    (state / "frames-4.json").write_text("{trunc")
    real, fitted = protocols.fit_variant, []
    monkeypatch.setattr(protocols, "fit_variant", lambda *args: (fitted.append(args[2]), real(*args))[1])
    run_protocols(config, work / "interim", work / "features", work / "pred")
    assert len(fitted) == 2                                  # the two damaged variants, not the whole one
    pd.testing.assert_frame_equal(pd.read_parquet(work / "pred/frame_budget.parquet"), expected)
    assert json.loads((work / "pred/protocols.json").read_text()) == json.loads(protocols_json)


def test_a_bad_throughput_record_stops_before_any_refit(run, tmp_path, monkeypatch):
    root = run[0]
    shutil.copytree(root / "features", tmp_path / "features")
    (tmp_path / "features" / "cnn_b.throughput.json").write_text('{"frames_per_s": "fast"}')
    monkeypatch.setattr(protocols, "fit_variant", lambda *args: pytest.fail("refit before the inputs were checked"))
    with pytest.raises(DataError, match=r"cnn_b.throughput.json: frames_per_s = 'fast'"):
        run_protocols(small_config(), root / "interim", tmp_path / "features", root / "pred")
    assert not (root / "pred" / ".protocols").exists()


def warnings_in(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:")]


def test_a_missing_throughput_record_warns_in_one_line_and_the_run_goes_on(run, tmp_path, monkeypatch, capsys):
    root = run[0]
    shutil.copytree(root / "features", tmp_path / "features")
    (tmp_path / "features" / "cnn_b.throughput.json").unlink()
    (tmp_path / "pred").mkdir()
    shutil.copy(root / "pred/videos.parquet", tmp_path / "pred/videos.parquet")

    class Fitting(Exception):
        pass

    monkeypatch.setattr(protocols, "fit_variant", lambda *args: (_ for _ in ()).throw(Fitting()))
    with pytest.raises(Fitting):                 # it goes on to the refits
        run_protocols(small_config(), root / "interim", tmp_path / "features", tmp_path / "pred")
    lines = warnings_in(capsys.readouterr().err)
    assert len(lines) == 1 and "cnn_b.throughput.json" in lines[0] and "cnn_a" not in lines[0], lines


def test_the_report_warns_without_protocols_json_or_a_measured_frames_per_s(run, tmp_path, capsys):
    root = run[0]
    pred, out = tmp_path / "pred", tmp_path / "r"
    shutil.copytree(root / "pred", pred)
    out.mkdir()
    capsys.readouterr()
    assert protocol_sections(pred, out, 20, 0)
    assert warnings_in(capsys.readouterr().err) == []
    info = json.loads((pred / "protocols.json").read_text())
    info["frame_budget"]["frames_per_s"]["cnn_a"] = None
    info["frame_budget"]["seconds_per_video"] = {k: None for k in info["frame_budget"]["seconds_per_video"]}
    (pred / "protocols.json").write_text(json.dumps(info))
    assert protocol_sections(pred, out, 20, 0)
    lines = warnings_in(capsys.readouterr().err)
    assert len(lines) == 1 and "frames/s" in lines[0] and lines[0].endswith("cnn_a"), lines
    assert pd.read_csv(out / "frame_budget.csv")["cnn_seconds_per_video"].isna().all()
    (pred / "protocols.json").unlink()
    assert protocol_sections(pred, out, 20, 0) == []
    lines = warnings_in(capsys.readouterr().err)
    assert len(lines) == 1 and "protocols.json: not found" in lines[0], lines
