"""`ensemble blend` on the real DFDC submissions in ../shared/dfdc, and on bad files made here."""
import json

import numpy as np
import pandas as pd
import pytest

from common.config import MAX_SEED, load_config
from common.metrics import log_loss
from common.problems import Problems
from conftest import run_cli, shared_file
from data.submissions import read_labels
from ensemble.settings import load_settings

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
    assert res.returncode == 2 and f"{b}: 1 labelled video missing (e.g. r9.mp4)" in res.stderr
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


def test_the_nested_figure_scores_the_clipped_file_that_is_submitted(tmp_path):
    """Nearly separable files (the probe's case; --C fixed to save time): folds' stacks predicted exact 0.0 and
    1.0, so oof.csv held values the submission clips away and the nested figure read 0.6471 (0.5505 with the C
    grid) while the chosen method's CV figure was 0.14; clipped as submitted, it reads 0.2447."""
    rng = np.random.default_rng(0)
    names = [f"v{i:03d}.mp4" for i in range(60)]
    y = np.tile([0, 1, 1], 20)                         # families of three: one REAL, two FAKE
    labels = write(tmp_path / "labels.csv", "filename,label,original\n" + "".join(
        f"{n},{'FAKE' if y[i] else 'REAL'},{names[i - i % 3] if y[i] else ''}\n" for i, n in enumerate(names)))
    files = []
    for name, (w, lo, hi) in {"a.csv": (0.4, 0.1, 0.5), "b.csv": (0.3, 0.1, 0.6)}.items():
        values = np.clip(y * w + rng.uniform(lo, hi, len(y)), 0, 1)
        files.append(write(tmp_path / name, "filename,label\n" + "".join(
            f"{n},{float(v)!r}\n" for n, v in zip(names, values))))
    res = run_cli("ensemble", "blend", "--predictions", *files, "--labels", labels, "--out", str(tmp_path / "o"),
                  "--C", "0.1")
    assert res.returncode == 0, res.stderr
    eps = load_settings(load_config()).blend.eps
    report = json.loads((tmp_path / "o/blend.json").read_text())
    oof = pd.read_csv(tmp_path / "o/oof.csv")["label"].to_numpy()
    sub = pd.read_csv(tmp_path / "o/submission.csv")["label"].to_numpy()
    for values in (oof, sub):                          # one range for both files: nothing the submission clips
        assert values.min() >= eps and values.max() <= 1 - eps
    assert oof.min() == eps and oof.max() == 1 - eps   # the folds' stacks did reach 0 and 1
    assert report["nested"]["log_loss"] == pytest.approx(log_loss(y, oof), abs=1e-4)    # the file's figure
    learned = [r["log_loss"] for r in report["methods"].values() if not r["reference"]]
    assert min(learned) <= report["nested"]["log_loss"] < 0.3
    assert f"clipped like it to [{eps:g}, {1 - eps:g}]" in res.stdout


def test_two_columns_of_one_file_labels_without_originals_and_fill_warnings(tmp_path):
    labels = write(tmp_path / "labels.csv", "filename,label\n" + "".join(
        f"r{i}.mp4,REAL\nf{i}.mp4,FAKE\n" for i in range(12)) + "u0.mp4,\n")
    rows = "".join(f"r{i}.mp4,{0.2 + i / 100},{0.3 - i / 100}\nf{i}.mp4,{0.7 - i / 100},{0.6 + i / 100}\n"
                   for i in range(12) if i not in (10, 11))
    multi = write(tmp_path / "multi.csv", "filename,score,other\n" + rows + "u0.mp4,0.5,0.5\nx0.mp4,0.4,0.4\n")
    res = run_cli("ensemble", "blend", "--predictions", f"{multi}:score", f"{multi}:other", "--labels", labels,
                  "--out", str(tmp_path / "o"), "--fill", "prior", "--folds", "4")
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "o/blend.json").read_text())
    assert {"file:multi.csv:score", "file:multi.csv:other"} <= set(report["methods"])
    warnings = [line for line in res.stderr.splitlines() if line.startswith("warning:")]
    # the count and the list agree; the empty label cell is the labels file's, named with its row
    assert f"warning: {multi}: 4 labelled videos missing (filled with the prior 0.500): f10.mp4, f11.mp4, " \
           "r10.mp4, r11.mp4" in warnings
    assert f"warning: {labels}: 1 video with an empty label (predicted, not scored): u0.mp4 ({labels}:26)" in warnings
    assert f"warning: {multi}: 1 video without a label (predicted, not scored): x0.mp4" in warnings
    assert not any("u0.mp4" in w for w in warnings if w.startswith(f"warning: {multi}"))
    assert sum("no video names an original, so every video is its own family" in w for w in warnings) == 1
    assert len(pd.read_csv(tmp_path / "o/submission.csv")) == 26


@pytest.mark.parametrize("flags, words", [
    (["--seed", "-1"], f"--seed -1: expected an integer in [0, {MAX_SEED}]"),
    (["--seed", str(10**23)], f"--seed {10**23}: expected an integer in [0, {MAX_SEED}]"),
    (["--folds", "3"], "--folds 3: the nested choice needs 4 to 1000 folds"),
    (["--C", "0"], "--C 0: expected a number in [1e-06, 1e+06]"),
    (["--C", "nan"], "--C nan: expected a number"),
    (["--out", "FILE"], "--out FILE: is a file, expected a folder"),
    (["--out", "FILE/sub"], "--out FILE/sub: FILE is a file, expected a folder"),
])
def test_bad_flags_are_one_line_errors_before_any_work(tmp_path, flags, words):
    labels = write(tmp_path / "labels.csv", "filename,label\nr0.mp4,0\nf0.mp4,1\n")
    a = write(tmp_path / "a.csv", "filename,label\nr0.mp4,0.1\nf0.mp4,0.9\n")
    existing = write(tmp_path / "FILE", "keep")
    flags = [f.replace("FILE", existing) for f in flags]
    res = run_cli("ensemble", "blend", "--predictions", a, "--labels", labels, *(["--out", str(tmp_path / "o")]
                  if "--out" not in flags else []), *flags)
    assert res.returncode == 2 and words.replace("FILE", existing) in res.stderr and res.stderr.count("\n") == 1
    assert "--C" not in res.stderr or "--C" in flags              # only the flag that is wrong is named
    assert (tmp_path / "FILE").read_text() == "keep" and not (tmp_path / "o").exists()
