"""`python -m evaluate score / validate / report / submission`: real DFDC files, bad files made here, and a
predictions table built here (no TensorFlow needed)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import log_loss as sk_log_loss
from sklearn.metrics import roc_auc_score

from conftest import run_cli, shared_file, tree_digest

# ../shared/dfdc/README.md: each file's log-loss and AUC on train_sample_videos
README_FIGURES = [
    ("trainsample400_pred_vtouch_effnet_20200221.csv", None, 0.563, 0.722),
    ("trainsample400_pred_vtouch_effnet_20200224.csv", None, 0.525, 0.737),
    ("trainsample400_pred_vtouch_effnet_20200225.csv", None, 0.673, 0.738),
    ("trainsample400_eval_vnicula_meso_withlabels.csv", "score", 0.808, 0.484),
    ("trainsample400_eval_vnicula_meso_c23_withlabels.tsv", "score", 0.816, 0.567),
]


def write(path, text):
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("name, column, loss, auc", README_FIGURES)
def test_score_reproduces_the_shared_readme(name, column, loss, auc):
    labels = shared_file("dfdc_train_sample_videos_metadata.json")
    path = str(shared_file(name))
    args = ["evaluate", "score", path, "--labels", str(labels), "--json"] + (["--column", column] if column else [])
    res = run_cli(*args)
    assert res.returncode == 0, res.stderr
    m = json.loads(res.stdout)[path]
    assert round(m["log_loss"], 3) == loss and round(m["auc"], 3) == auc
    assert m["n_videos"] == 400 and m["log_loss_ci"][0] < m["log_loss"] < m["log_loss_ci"][1]
    if name.endswith(".tsv"):
        assert "metadata.json" in res.stderr        # the row where the model scored metadata.json itself


def test_the_broken_real_submission_is_refused_naming_duplicates_and_missing_videos():
    broken = str(shared_file("test400_pred_at100_mesonet_with_duplicates.csv"))
    sample = str(shared_file("dfdc_sample_submission.csv"))
    res = run_cli("evaluate", "validate", broken, "--sample", sample)
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert "65 videos listed more than once (73 extra rows)" in res.stderr
    assert "3 videos of the sample" in res.stderr
    assert "eppyqpgewp.mp4, rfjuhbnlro.mp4, xdezcezszc.mp4" in res.stderr
    res = run_cli("evaluate", "validate", sample, "--sample", sample)     # the published sample is valid
    assert res.returncode == 0, res.stderr


@pytest.fixture
def sample(tmp_path):
    return write(tmp_path / "sample.csv", "filename,label\r\nb.mp4,0\r\na.mp4,0\r\nc.mp4,0\r\n")


@pytest.mark.parametrize("body, words", [
    ("filename,label\nb.mp4,0.2\na.mp4,0.9\nc.mp4,0.5\n", None),
    ("filename,prob\nb.mp4,0.2\na.mp4,0.9\nc.mp4,0.5\n", "header is 'filename,prob', expected 'filename,label'"),
    ("filename\tlabel\nb.mp4\t0.2\na.mp4\t0.9\nc.mp4\t0.5\n", "tab-separated"),
    ("filename,label\nb.mp4,0.2\na.mp4,\nc.mp4,0.5\n", "1 rows with NaN or empty label: a.mp4 (line 3"),
    ("filename,label\nb.mp4,0.2\na.mp4,NaN\nc.mp4,0.5\n", "NaN or empty label: a.mp4"),
    ("filename,label\nb.mp4,0.2\na.mp4,1.2\nc.mp4,-0.1\n", "2 rows with label outside [0, 1]: a.mp4 (line 3: '1.2')"),
    ("filename,label\nb.mp4,0.2\na.mp4,0.9\na.mp4,0.7\nc.mp4,0.5\n",
     "1 videos listed more than once (1 extra rows): a.mp4"),
    ("filename,label\nb.mp4,0.2\na.mp4,0.9\n", "1 videos of the sample"),
    ("filename,label\nb.mp4,0.2\na.mp4,0.9\nc.mp4,0.5\nd.mp4,0.5\n", "1 videos not in the sample"),
    ("filename,label\nb.mp4,0.2\na,0.9\nc.mp4,0.5\n", "filename 'a' is not written as in the sample"),
    ("filename,label\nb.mp4,0.2\na.mp4,0.9\nc.mp4,0.5\nmetadata.json,0.5\n", "1 rows name no video: metadata.json"),
    ("filename,label\nb.mp4,0.2\n\na.mp4,abc\nc.mp4,0.5\n", "non-numeric label: a.mp4 (line 4: 'abc')"),
])
def test_validate_accepts_only_what_kaggle_accepts(tmp_path, sample, body, words):
    sub = write(tmp_path / "submission.csv", body)
    res = run_cli("evaluate", "validate", sub, "--sample", sample)
    if words is None:
        assert res.returncode == 0, res.stderr
        assert "valid: 3 videos" in res.stdout
    else:
        assert res.returncode == 2 and words in res.stderr and res.stderr.count("\n") == 1, res.stderr


def test_score_errors_and_dedupe(tmp_path):
    labels = write(tmp_path / "labels.csv", "filename,label,original\na.mp4,FAKE,c.mp4\nb.mp4,FAKE,c.mp4\n"
                                            "c.mp4,REAL,\nd.mp4,REAL,\ne.mp4,1,d.mp4\n")
    dup = write(tmp_path / "dup.csv", "filename,label\na.mp4,0.9\na.mp4,0.7\nb.mp4,0.6\nc.mp4,0.3\n"
                                      "d.mp4,0.1\ne.mp4,0.8\n")
    res = run_cli("evaluate", "score", dup, "--labels", labels)
    assert res.returncode == 2 and "1 videos listed more than once" in res.stderr
    res = run_cli("evaluate", "score", dup, "--labels", labels, "--dedupe", "mean", "--json")
    assert res.returncode == 0, res.stderr
    m = json.loads(res.stdout)[dup]
    y, p = [1, 1, 0, 0, 1], [0.8, 0.6, 0.3, 0.1, 0.8]
    assert m["log_loss"] == pytest.approx(sk_log_loss(y, p)) and m["auc"] == pytest.approx(roc_auc_score(y, p))
    assert m["duplicates_averaged"] == 1 and "repeated rows averaged" in res.stderr
    short = write(tmp_path / "short.csv", "filename,label\na.mp4,0.9\nb.mp4,0.6\n")
    res = run_cli("evaluate", "score", short, "--labels", labels)
    assert res.returncode == 2 and "3 videos of the labels" in res.stderr and "c.mp4, d.mp4, e.mp4" in res.stderr


def test_score_honours_the_configs_ece_bins(tmp_path):
    from evaluate.metrics import ece

    labels = write(tmp_path / "labels.csv", "filename,label\n" + "".join(
        f"v{i}.mp4,{'FAKE' if i % 3 else 'REAL'}\n" for i in range(12)))
    p = [0.05 + 0.9 * ((i * 7) % 12) / 11 for i in range(12)]
    preds = write(tmp_path / "preds.csv", "filename,label\n" + "".join(f"v{i}.mp4,{v}\n" for i, v in enumerate(p)))
    config = write(tmp_path / "bins.toml", "[evaluate]\nece_bins = 2\n")
    res = run_cli("evaluate", "score", preds, "--labels", labels, "--config", config, "--json")
    assert res.returncode == 0, res.stderr
    y = [1 if i % 3 else 0 for i in range(12)]
    assert ece(y, p, bins=2) != pytest.approx(ece(y, p, bins=10))   # the bins change the figure here
    assert json.loads(res.stdout)[preds]["ece"] == pytest.approx(ece(y, p, bins=2))


def test_validate_a_sample_written_without_extensions(tmp_path):
    sample = write(tmp_path / "sample.csv", "filename,label\nbbb,0\naaa,0\n")
    sub = write(tmp_path / "sub.csv", "filename,label\naaa,0.3\nbbb,0.6\n")
    res = run_cli("evaluate", "validate", sub, "--sample", sample)
    assert res.returncode == 0, res.stderr
    sub = write(tmp_path / "sub2.csv", "filename,label\naaa.mp4,0.3\nbbb,0.6\n")
    res = run_cli("evaluate", "validate", sub, "--sample", sample)
    assert res.returncode == 2 and "'aaa.mp4' is not written as in the sample" in res.stderr


def test_score_column_of_a_file_without_extension_and_json_with_undefined_metrics(tmp_path):
    labels = write(tmp_path / "labels.csv", "filename,label\na.mp4,FAKE\nb.mp4,FAKE\n")   # one class: no AUC
    preds = write(tmp_path / "preds", "filename,score\na.mp4,0.9\nb.mp4,0.6\n")
    res = run_cli("evaluate", "score", preds, "--labels", labels, "--column", "score", "--json")
    assert res.returncode == 0, res.stderr
    m = json.loads(res.stdout)[preds]                 # valid JSON: NaN written as null
    assert m["auc"] is None and m["log_loss"] == pytest.approx(sk_log_loss([1, 1], [0.9, 0.6], labels=[0, 1]))


# --- report and submission on a predictions table made here ----------------------------------------------

def predictions_table(tmp_path, unlabelled: int = 0):
    """data/predictions/toy/{videos.parquet, fit.json}: 3 splits, 2 backbones x 2 rules, 2 combiners."""
    rng = np.random.default_rng(0)
    rows = []
    for split, n_fam in (("train", 10), ("blend", 20), ("test", 20)):
        for f in range(n_fam):
            family = f"{split}{f}"
            for k in range(4):
                rows.append({"video": f"{family}_{k}.mp4", "split": split, "label": float(k > 0), "fold": f % 5,
                             "family": family, "n_frames": 12 - (k == 3) * 12 * (f == 0),
                             "manipulation": None if k == 0 else ["color", "seam", "lowres"][k - 1]})
    for i in range(unlabelled):
        rows.append({"video": f"u{i}.mp4", "split": "unlabeled", "label": np.nan, "fold": -1, "family": f"u{i}",
                     "n_frames": 12, "manipulation": None})
    table = pd.DataFrame(rows)
    y = table["label"].fillna(0).to_numpy()
    for b, quality in (("cnn", 2.0), ("other", 0.5)):
        for r, noise in (("mean", 1.0), ("max", 1.5)):
            z = quality * (2 * y - 1) + noise * rng.normal(size=len(y))
            table[f"{b}/{r}"] = 1 / (1 + np.exp(-z))
    table["stack/good"] = 1 / (1 + np.exp(-(3 * (2 * y - 1) + rng.normal(size=len(y)))))
    table["blend/mean"] = table[["cnn/mean", "other/mean"]].mean(axis=1)
    folder = tmp_path / "data/predictions/toy"
    folder.mkdir(parents=True)
    table.to_parquet(folder / "videos.parquet", index=False)
    (folder / "fit.json").write_text(toy_fit("blend/mean"))
    return table


def toy_fit(best: str) -> str:
    """``fit.json`` of a predictions table made here, submitting ``best``."""
    from ensemble.records import Choice, FitRecord

    return json.dumps(FitRecord(0.75, {}, best, Choice(best, 0.5)).to_json())


def test_report_writes_the_schema_sorted_leaderboard_and_figures(tmp_path):
    table = predictions_table(tmp_path)
    res = run_cli("evaluate", "report", "--name", "toy", "--predictions", str(tmp_path / "data/predictions"),
                  "--out", str(tmp_path / "reports"))
    assert res.returncode == 0, res.stderr
    out = tmp_path / "reports/toy"
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"dataset", "split", "n_videos", "epsilon", "methods", "best_method"}
    assert metrics["dataset"] == "toy" and metrics["split"] == "test" and metrics["epsilon"] == 1e-15
    assert metrics["n_videos"] == 80 and metrics["best_method"] == "stack/good"
    keys = {"log_loss", "log_loss_ci", "balanced_log_loss", "auc", "ap", "eer", "brier", "ece", "accuracy",
            "precision", "recall", "specificity"}
    test = table[table["split"] == "test"]
    for method, m in metrics["methods"].items():
        assert set(m) == keys
        assert m["log_loss"] == pytest.approx(sk_log_loss(test["label"], test[method]))
        assert m["log_loss_ci"][0] <= m["log_loss"] <= m["log_loss_ci"][1]
    board = pd.read_csv(out / "leaderboard.csv")
    assert set(board["split"]) == {"test", "blend"}
    for _, part in board.groupby("split"):
        assert part["log_loss"].is_monotonic_increasing and len(part) == 6
    oof = json.loads((out / "metrics_blend_oof.json").read_text())
    blend = table[table["split"] == "blend"]
    assert oof["split"] == "blend" and oof["n_videos"] == len(blend)
    assert oof["methods"]["cnn/max"]["log_loss"] == pytest.approx(sk_log_loss(blend["label"], blend["cnn/max"]))
    text = (out / "report.md").read_text()
    assert "blend/mean" in text and "1e-15" in text and "Paired bootstrap" in text
    for figure in ["test_roc.png", "test_reliability.png", "test_histogram.png", "test_rules_heatmap.png",
                   "test_manipulation.png", "blend_roc.png"]:
        assert f"]({figure})" in text
        with Image.open(out / figure) as im:
            assert im.format == "PNG" and im.width > 300
    # a report that fails after its first files (here on a bad protocols.json) leaves the earlier report whole,
    # and no folder where there was none; files of other commands are kept
    (out / "submission.csv").write_text("filename,label\n")
    before = tree_digest(out)
    (tmp_path / "data/predictions/toy/protocols.json").write_text("{}")
    for reports in (tmp_path / "reports", tmp_path / "new"):
        res = run_cli("evaluate", "report", "--name", "toy", "--predictions", str(tmp_path / "data/predictions"),
                      "--out", str(reports))
        assert res.returncode == 2 and "protocols.json: frame_budget = None" in res.stderr, res.stderr
    assert tree_digest(out) == before and not list((tmp_path / "new").iterdir())
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == ["toy"]       # no staging folder left


def test_submission_default_method_test_split_and_sample_order(tmp_path):
    table = predictions_table(tmp_path)
    base = ["evaluate", "submission", "--name", "toy", "--predictions", str(tmp_path / "data/predictions")]
    res = run_cli(*base, "--out", str(tmp_path / "sub.csv"))
    assert res.returncode == 0, res.stderr
    sub = pd.read_csv(tmp_path / "sub.csv")
    test = table[table["split"] == "test"]
    assert list(sub.columns) == ["filename", "label"] and list(sub["filename"]) == list(test["video"])
    assert np.allclose(sub["label"], test["blend/mean"])        # fit.json's choice, made on the blend OOF
    # a sample fixes the rows and their order; values are clipped to Kaggle's bounds
    table.loc[table["video"] == "test3_1.mp4", "stack/good"] = 1.0
    table.to_parquet(tmp_path / "data/predictions/toy/videos.parquet", index=False)
    order = ["test3_1.mp4", "test0_2.mp4", "test1_0.mp4"]
    sample = write(tmp_path / "sample.csv", "filename,label\n" + "".join(f"{v},0.5\n" for v in order))
    res = run_cli(*base, "--method", "stack/good", "--sample", sample, "--out", str(tmp_path / "s2.csv"))
    assert res.returncode == 0, res.stderr
    sub = pd.read_csv(tmp_path / "s2.csv")
    assert list(sub["filename"]) == order and sub["label"].iloc[0] == 1 - 1e-15
    assert run_cli("evaluate", "validate", str(tmp_path / "s2.csv"), "--sample", sample).returncode == 0
    # a sample naming a video without a prediction: an error, nothing written
    bad = write(tmp_path / "bad.csv", "filename,label\ntest3_1.mp4,0.5\nnope.mp4,0.5\n")
    res = run_cli(*base, "--sample", bad, "--out", str(tmp_path / "s3.csv"))
    assert res.returncode == 2 and "nope.mp4" in res.stderr and not (tmp_path / "s3.csv").exists()
    res = run_cli(*base, "--method", "stack/none", "--out", str(tmp_path / "s4.csv"))
    assert res.returncode == 2 and "no method column 'stack/none'" in res.stderr
    (tmp_path / "data/predictions/toy/fit.json").unlink()
    res = run_cli(*base, "--out", str(tmp_path / "s5.csv"))
    assert res.returncode == 2 and "--method" in res.stderr and "fit.json" in res.stderr


def test_submission_covers_the_unlabelled_videos_when_there_are_some(tmp_path):
    predictions_table(tmp_path, unlabelled=7)
    res = run_cli("evaluate", "submission", "--name", "toy", "--predictions", str(tmp_path / "data/predictions"),
                  "--out", str(tmp_path / "sub.csv"))
    assert res.returncode == 0, res.stderr
    sub = pd.read_csv(tmp_path / "sub.csv")
    assert list(sub["filename"]) == [f"u{i}.mp4" for i in range(7)] and "unlabelled" in res.stdout


def test_seeds_report_the_spread_and_the_submitted_method_against_the_best_single_column(tmp_path):
    runs = []
    for k in range(3):
        root = tmp_path / f"run{k}"
        table = predictions_table(root)
        noise = np.random.default_rng(k).normal(scale=0.3, size=len(table))
        # another seed: the combiner falls a little differently, and one run submits a poor column
        table["stack/good"] = 1 / (1 + np.exp(-(np.log(table["stack/good"] / (1 - table["stack/good"])) + noise)))
        table.to_parquet(root / "data/predictions/toy/videos.parquet", index=False)
        best = "other/max" if k == 2 else "stack/good"
        (root / "data/predictions/toy/fit.json").write_text(toy_fit(best))
        runs.append(str(root / "data/predictions"))
    res = run_cli("evaluate", "seeds", "--name", "toy", "--runs", *runs, "--out", str(tmp_path / "reports"))
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "reports/toy/seeds.json").read_text())
    good = next(m for m in report["methods"] if m["method"] == "stack/good")
    assert len(good["test_log_loss"]) == 3 and good["min"] <= good["mean"] <= good["max"] and good["std"] > 0
    means = [m["mean"] for m in report["methods"]]
    assert means == sorted(means)                                   # sorted by the mean over seeds
    for k, run in enumerate(report["runs"]):
        assert run["best_single"] == "cnn/mean"                   # the (backbone, rule) column best on blend
        assert run["worse_beyond_noise"] == (k == 2), run        # a poor submitted column is flagged
    assert "| `stack/good` |" in (tmp_path / "reports/toy/seeds.md").read_text()
    # runs of other data are refused in one line
    other = predictions_table(tmp_path / "other")
    other.iloc[:5].to_parquet(tmp_path / "other/data/predictions/toy/videos.parquet", index=False)
    res = run_cli("evaluate", "seeds", "--name", "toy", "--runs", runs[0], str(tmp_path / "other/data/predictions"),
                  "--out", str(tmp_path / "reports2"))
    assert res.returncode == 2 and "other videos or splits" in res.stderr and res.stderr.count("\n") == 1
    assert not (tmp_path / "reports2/toy/seeds.json").exists()
    # one run given twice, under two spellings, is refused (it made a std of 0 "over 2 runs")
    for twice in (["data/predictions", "data/predictions"], ["data/predictions", "./data/predictions/"],
                  ["data/predictions", runs[0]]):
        res = run_cli("evaluate", "seeds", "--name", "toy", "--runs", *twice, runs[1],
                      "--out", str(tmp_path / "reports3"), cwd=tmp_path / "run0")
        assert res.returncode == 2 and "are the same folder" in res.stderr and res.stderr.count("\n") == 1, \
            res.stderr
        assert not (tmp_path / "reports3").exists()


def test_the_runner_up_is_never_the_best_method_under_another_name():
    from evaluate.report import best_against_runner_up, leaderboard

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    p = np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.2, 60), 0.01, 0.99)
    part = pd.DataFrame({"label": y, "family": np.arange(60) // 2, "stack/logistic": p, "stack/chosen": p,
                         "cnn/mean": np.full(60, 0.5)})
    board = leaderboard(part, ["stack/logistic", "stack/chosen", "cnn/mean"], 50, 0, 10)
    paired = best_against_runner_up(part, board, 50, 0)
    assert paired["runner_up"] == "cnn/mean" and paired["diff"] != 0
    assert best_against_runner_up(part, board.drop(index="cnn/mean"), 50, 0) is None
