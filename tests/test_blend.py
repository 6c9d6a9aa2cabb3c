"""`ensemble blend` on the real DFDC submissions in ../shared/dfdc, and on bad files made here."""
import json

import pandas as pd
import pytest

from common.metrics import log_loss
from common.problems import Problems
from conftest import run_cli, shared_file
from data.submissions import read_labels

FILES = ["trainsample400_pred_vtouch_effnet_20200221.csv", "trainsample400_pred_vtouch_effnet_20200224.csv",
         "trainsample400_pred_vtouch_effnet_20200225.csv", "trainsample400_eval_vnicula_meso_withlabels.csv:score",
         "trainsample400_eval_vnicula_meso_c23_withlabels.tsv:score"]
# each file's own log-loss on train_sample_videos, from ../shared/dfdc/README.md
README_LOSS = [0.563, 0.525, 0.673, 0.808, 0.816]


def test_a_stack_of_real_submissions_beats_the_best_single_file(tmp_path):
    specs = []
    for f in FILES:
        name, _, column = f.partition(":")
        specs.append(f"{shared_file(name)}:{column}" if column else str(shared_file(name)))
    labels = shared_file("dfdc_train_sample_videos_metadata.json")
    res = run_cli("ensemble", "blend", "--predictions", *specs, "--labels", str(labels), "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "blend.json").read_text())
    assert report["videos"] == 400 and report["families"] == 244 and report["seed"] == 42
    methods = report["methods"]
    singles = [methods[f"file:{f.partition(':')[0]}"]["log_loss_raw"] for f in FILES]
    assert singles == pytest.approx(README_LOSS, abs=0.001)            # the files' own log-loss, as published
    assert methods["prior"]["log_loss"] == pytest.approx(0.490, abs=0.001)
    assert methods["mean"]["log_loss_raw"] == pytest.approx(0.580, abs=0.001)
    chosen = report["chosen"]
    learned = {m: r["log_loss"] for m, r in methods.items() if not r["reference"]}
    assert not methods[chosen]["reference"] and methods[chosen]["log_loss"] == min(learned.values())
    assert {"logistic", "spline", "lightgbm", "caruana", "average:lightgbm+logistic"} <= set(learned)
    # the nested figure scores the whole choice: honest, so no lower than the chosen method's own CV figure here,
    # and still far better than the best single file and the prior
    nested = report["nested"]
    assert len(nested["chosen_per_fold"]) == 5 and set(nested["chosen_per_fold"]) <= set(learned)
    assert methods[chosen]["log_loss"] <= nested["log_loss"] < min(min(singles), 0.490) - 0.05
    oof = pd.read_csv(tmp_path / "oof.csv")
    sub = pd.read_csv(tmp_path / "submission.csv")
    assert list(oof.columns) == list(sub.columns) == ["filename", "label"]
    assert len(oof) == 400 and len(sub) == 400 and sub["label"].between(0, 1).all()
    labels_of = read_labels(labels, Problems()).label
    assert log_loss(labels_of.reindex(oof["filename"]).to_numpy(), oof["label"].to_numpy()) == \
        pytest.approx(nested["log_loss"], abs=1e-4)                       # oof.csv holds the nested predictions
    assert "nested CV log-loss of the whole choice" in res.stdout
    assert "metadata.json" in res.stderr and "name no video" in res.stderr


def write(path, text):
    path.write_text(text)
    return str(path)


def test_duplicates_are_averaged_and_missing_videos_need_fill(tmp_path):
    labels = write(tmp_path / "labels.csv", "filename,label,original\n" + "".join(
        f"r{i}.mp4,REAL,\nf{i}.mp4,FAKE,r{i}.mp4\ng{i}.mp4,1,r{i}.mp4\n" for i in range(10)))
    rows = "".join(f"r{i}.mp4,0.2\nf{i}.mp4,0.7\ng{i}.mp4,0.9\n" for i in range(10))
    a = write(tmp_path / "a.csv", "filename,label\n" + rows + "f0.mp4,0.9\n")
    b = write(tmp_path / "b.csv", "filename,label\n" + rows.replace("r9.mp4,0.2\n", ""))
    res = run_cli("ensemble", "blend", "--predictions", a, b, "--labels", labels, "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and f"{b}: 1 labelled videos missing (e.g. r9.mp4)" in res.stderr
    assert res.stderr.count("\n") == 1 and not (tmp_path / "o").exists()
    res = run_cli("ensemble", "blend", "--predictions", a, b, "--labels", labels, "--out", str(tmp_path / "o"),
                  "--fill", "prior", "--folds", "4")
    assert res.returncode == 0, res.stderr
    assert "repeated rows averaged" in res.stderr and "filled with the prior" in res.stderr
    sub = pd.read_csv(tmp_path / "o/submission.csv")
    assert len(sub) == 30


@pytest.mark.parametrize("body, words", [
    ("filename,label\nr0.mp4,1.5\n", "a.csv: 1 rows with label outside [0, 1]: r0.mp4 (line 2: '1.5')"),
    ("filename,label\nr0.mp4,nan\n", "a.csv: 1 rows with NaN or empty label: r0.mp4 (line 2"),
    ("filename,label\nr0.mp4,high\n", "non-numeric label: r0.mp4 (line 2"),
    ("name,label\nr0.mp4,0.5\n", "no 'filename' column"),
])
def test_bad_prediction_files_are_one_line_errors(tmp_path, body, words):
    labels = write(tmp_path / "labels.csv", "filename,label\nr0.mp4,0\nf0.mp4,1\n")
    a = write(tmp_path / "a.csv", body)
    res = run_cli("ensemble", "blend", "--predictions", a, "--labels", labels, "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and words in res.stderr and res.stderr.count("\n") == 1
