"""`ensemble fit` on a synthetic frame table: outputs, no leakage, grouped OOF, pickle-free models."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from common.config import load_config
from common.metrics import log_loss
from conftest import run_cli
from ensemble.fit import run_fit
from ensemble.saved import load_stacker
from ensemble.selection import Candidate, fit_candidates
from ensemble.stackers import LightGBMStack, LogisticStack, WeightedBlend
from extract.cache import feature_table as _table

BACKBONES = ["cnn_a", "cnn_b"]


def make_inputs(root: Path, seed: int = 0, n_families: int = 60):
    """videos.parquet with family-grouped splits/folds, and two backbones' frame features whose scores
    carry the label with noise."""
    from data.splits import assign_splits

    rng = np.random.default_rng(seed)
    rows = []
    for f in range(n_families):
        rows.append((f"r{f:03d}.mp4", 0, f"r{f:03d}.mp4"))
        rows += [(f"f{f:03d}_{k}.mp4", 1, f"r{f:03d}.mp4") for k in range(rng.integers(2, 7))]
    videos = pd.DataFrame(rows, columns=["video", "label", "family"])
    videos["label"] = videos["label"].astype("Int8")
    videos = assign_splits(videos, {"train": 0.4, "blend": 0.4, "test": 0.2}, 5, seed)
    videos["n_frames"] = rng.integers(0, 12, len(videos))
    videos.loc[videos.index[:3], "n_frames"] = 0
    (root / "interim").mkdir(parents=True)
    videos.to_parquet(root / "interim/videos.parquet", index=False)
    (root / "features").mkdir()
    for b, strength in zip(BACKBONES, (1.5, 0.8)):
        frames = videos.loc[videos.index.repeat(videos["n_frames"]), ["video", "label"]].reset_index(drop=True)
        frames["frame"] = frames.groupby("video").cumcount() * 10
        frames["face"] = 1
        z = strength * (frames["label"].astype(float).to_numpy() * 2 - 1) + rng.normal(0, 1.5, len(frames))
        score = 1 / (1 + np.exp(-z))
        emb = rng.normal(size=(len(frames), 6)).astype(np.float32) + z[:, None].astype(np.float32) * 0.2
        table = _table(frames["video"].to_numpy(), frames["frame"].to_numpy(), frames["face"].to_numpy(),
                       score.astype(np.float32), emb, "k", 6)
        pq.write_table(table, root / "features" / f"{b}.parquet")
    return videos


def fit(root: Path, out: str = "pred"):
    config = load_config()
    return run_fit(config, root / "interim", root / "features", root / out, root / f"models_{out}", BACKBONES)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("ensemble")
    videos = make_inputs(root)
    out, report = fit(root)
    return root, videos, out, report


def test_predictions_table_has_every_method_and_the_prior_for_frameless_videos(fitted):
    root, videos, out, report = fitted
    saved = pd.read_parquet(root / "pred/videos.parquet")
    pd.testing.assert_frame_equal(saved, out)
    assert list(out["video"]) == sorted(videos["video"])
    for col in ["cnn_a/mean", "cnn_a/confident:0.8", "cnn_b/max", "blend/mean", "blend/weighted",
                "stack/logistic", "stack/lightgbm"]:
        assert out[col].between(0, 1).all(), col
    frameless = out["video"].isin(videos.loc[videos["n_frames"] == 0, "video"])
    assert (out.loc[frameless, "stack/lightgbm"] == report["prior"]).all()
    assert json.loads((root / "pred/fit.json").read_text())["best_method"] == "stack/chosen"
    chosen = report["chosen"]["method"]
    assert not report["methods"][chosen]["reference"] and len(report["chosen"]["chosen_per_fold"]) == 5
    learned = [r["oof_log_loss"] for r in report["methods"].values() if not r["reference"]]
    assert report["methods"][chosen]["oof_log_loss"] == min(learned)
    # fit.json scores exactly the blend rows written (frameless ones at the prior), so the choice matches the table
    blend = out[out["split"] == "blend"]
    assert (frameless & (out["split"] == "blend")).any()
    for method, r in report["methods"].items():
        assert r["oof_log_loss"] == pytest.approx(log_loss(blend["label"].to_numpy(float), blend[method])), method
    # stack/chosen: the nested OOF predictions of the whole choice on the blend split, the chosen method elsewhere
    assert report["chosen"]["nested_oof_log_loss"] == pytest.approx(
        log_loss(blend["label"].to_numpy(float), blend["stack/chosen"]))
    rest = out["split"] != "blend"
    np.testing.assert_array_equal(out.loc[rest, "stack/chosen"], out.loc[rest, chosen])


def test_fit_refuses_configs_it_cannot_honour(tmp_path):
    from common.errors import DataError
    from ensemble.stackers import LightGBMStack

    make_inputs(tmp_path)
    config = load_config()
    config["ensemble"]["rules"] = ["median", "max"]
    with pytest.raises(DataError, match="rules must include"):
        run_fit(config, tmp_path / "interim", tmp_path / "features", tmp_path / "p", tmp_path / "m", BACKBONES)
    videos = pd.read_parquet(tmp_path / "interim/videos.parquet")
    videos["fold"] = videos["fold"] % 2                       # a blend split with 2 folds: no inner fold left
    videos.to_parquet(tmp_path / "interim/videos.parquet", index=False)
    with pytest.raises(DataError, match="at least 3 family-grouped folds"):
        run_fit(load_config(), tmp_path / "interim", tmp_path / "features", tmp_path / "p", tmp_path / "m",
                BACKBONES)
    assert not (tmp_path / "p").exists()
    # monotone constraints apply to the named columns whether or not the stacker boosts from a base
    stack = LightGBMStack(["a", "b", "c"], {}, monotone_columns=["a", "c"])
    assert stack._lgb_params()["monotone_constraints"] == [1, 0, 1]


def test_stackers_beat_the_prior_and_single_columns_on_test(fitted):
    _, _, out, report = fitted
    test = out[(out["split"] == "test") & out["label"].notna()]
    y = test["label"].astype(int)
    prior = log_loss(y, np.full(len(y), report["prior"]))
    assert log_loss(y, test["stack/logistic"]) < prior
    assert log_loss(y, test["stack/lightgbm"]) < prior


def test_the_stackers_never_see_train_split_videos(fitted, tmp_path):
    root, videos, out, _ = fitted
    shutil_copy(root, tmp_path)
    vids = pd.read_parquet(tmp_path / "interim/videos.parquet")
    train = vids["split"] == "train"
    vids.loc[train, "label"] = 1 - vids.loc[train, "label"]          # different labels on train videos
    vids.to_parquet(tmp_path / "interim/videos.parquet", index=False)
    for b in BACKBONES:                                                # and different train-video scores
        t = pq.read_table(tmp_path / f"features/{b}.parquet")
        df = t.to_pandas()
        flip = df["video"].isin(vids.loc[train, "video"]).to_numpy()
        score = np.where(flip, 1 - df["score"].to_numpy(), df["score"].to_numpy()).astype(np.float32)
        emb = np.stack(df["embedding"].to_numpy()).astype(np.float32)
        pq.write_table(_table(df["video"].to_numpy(), df["frame"].to_numpy(), df["face"].to_numpy(), score, emb,
                              "k", 6), tmp_path / f"features/{b}.parquet")
    changed, _ = fit(tmp_path)
    rows = out["split"].isin(["blend", "test"]).to_numpy()
    for col in ["blend/weighted", "stack/logistic", "stack/lightgbm", "blend/mean"]:
        np.testing.assert_allclose(changed.loc[rows, col], out.loc[rows, col], err_msg=col)


def shutil_copy(src: Path, dst: Path):
    import shutil
    for sub in ("interim", "features"):
        shutil.copytree(src / sub, dst / sub)


def test_oof_predictions_of_a_fold_ignore_that_folds_labels(fitted):
    root, videos, out, _ = fitted
    X = out[[c for c in out.columns if c.startswith("cnn_")]]
    cols = list(X.columns)
    y = out["label"].fillna(0).astype(int).to_numpy()
    folds = out["fold"].to_numpy()
    blend = (out["split"] == "blend").to_numpy()
    groups = out["family"].to_numpy()[blend]
    stack = {"logistic": Candidate(lambda: LogisticStack(cols, 0.1, Cs=(0.01, 0.1, 1), cv_folds=3))}

    def oof_of(labels):
        fitted = fit_candidates(stack, X[blend], labels[blend], folds[blend], groups, [0.01])
        return fitted["logistic"].oof
    oof = oof_of(y)
    held = blend & (folds == 2)
    y2 = y.copy()
    y2[held] = 1 - y2[held]
    oof2 = oof_of(y2)         # the C tuned inside each training part does not see the held fold either
    in_fold = folds[blend] == 2
    np.testing.assert_allclose(oof[in_fold], oof2[in_fold])
    assert not np.allclose(oof[~in_fold], oof2[~in_fold])
    # folds come from the family-grouped table: no family spans two folds of the blend split
    b = videos[videos["split"] == "blend"]
    assert b.groupby("family")["fold"].nunique().max() == 1


def test_saved_combiners_reload_from_json_and_lightgbm_text(fitted):
    root, _, out, _ = fitted
    models = root / "models_pred"
    for path in models.iterdir():
        head = path.read_bytes()[:2]
        assert head != b"\x80\x04" and path.suffix in (".json", ".txt")
    model, calibrator = load_stacker(models / "stack_lightgbm")
    assert model.booster_.num_trees() > 0 and calibrator.kind in ("clip", "platt", "isotonic")
    assert model.base_ is not None           # the default boosts from the convex blend, saved as JSON too
    # the saved ensemble reproduces the written test-split predictions of every method from the frame features
    from ensemble.fit import load_inputs
    from ensemble.saved import SavedEnsemble
    from extract.cache import load_features

    videos, files = load_inputs(root / "interim", root / "features", BACKBONES)
    frames = {b: load_features(path) for b, path in files.items()}
    test = (videos["split"] == "test").to_numpy()
    saved = SavedEnsemble(models)
    assert saved.best_method == json.loads((root / "pred/fit.json").read_text())["best_method"]
    methods = saved.methods()
    assert {"stack/lightgbm", "stack/logistic", "blend/weighted", "blend/mean", "cnn_a/max"} <= set(methods)
    for method in methods:
        pred = saved.predict(videos.loc[test, "video"].tolist(), frames, method)
        np.testing.assert_allclose(pred, out.loc[test, method].to_numpy(), rtol=1e-9, atol=1e-12, err_msg=method)
    model, calibrator = load_stacker(models / "stack_logistic")
    assert isinstance(model, LogisticStack) and len(model.coef_) == len(model.columns)


def _toy_columns(n: int = 240, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = pd.DataFrame({f"c{i}": 1 / (1 + np.exp(-(q * (2 * y - 1) + rng.normal(size=n))))
                      for i, q in enumerate((2, 1, .3))})
    return X, y, np.arange(n) % 4


@pytest.mark.parametrize("make", [
    lambda cols: WeightedBlend(cols),
    lambda cols: LogisticStack(cols, 0.5),
    lambda cols: LightGBMStack(cols, {"num_leaves": 4, "n_estimators": 20, "learning_rate": 0.1,
                                      "early_stopping_rounds": 5, "min_child_samples": 5}, 0, base_columns=cols,
                               base="weighted"),
])
def test_combiners_follow_scikit_learn_conventions(make):
    """clone, fitted attributes ending in '_', (n, 2) probabilities, and scikit-learn's own cross_val_predict
    giving exactly the OOF predictions of the project's cross-fitting helper."""
    from sklearn.base import clone
    from sklearn.model_selection import PredefinedSplit, cross_val_predict

    from ensemble.crossfit import cross_fit

    X, y, folds = _toy_columns()
    est = make(list(X.columns))
    params = est.get_params()
    unfitted = set(vars(est))
    assert est.fit(X, y) is est
    assert all(name.endswith("_") for name in set(vars(est)) - unfitted)
    proba = est.predict_proba(X)
    assert proba.shape == (len(X), 2) and np.allclose(proba.sum(axis=1), 1) and ((proba >= 0) & (proba <= 1)).all()
    twin = clone(est)
    assert twin.get_params().keys() == params.keys() and not hasattr(twin, "classes_")
    sk = cross_val_predict(twin, X, y, cv=PredefinedSplit(folds), method="predict_proba")[:, 1]
    ours = cross_fit(lambda: clone(est), X, y, folds).oof
    np.testing.assert_array_equal(sk, ours)
    assert log_loss(y, ours) < log_loss(y, np.full(len(y), y.mean()))


def test_a_damaged_saved_combiner_is_refused_not_applied(fitted, tmp_path):
    """NaN weights (Python's json reads them) and a truncated LightGBM text are one-line errors, never NaN."""
    import shutil

    from common.errors import DataError

    root = fitted[0]
    models = tmp_path / "models"
    shutil.copytree(root / "models_pred", models)
    blend = json.loads((models / "blend_weighted.json").read_text())
    blend["weights"][0] = float("nan")
    (models / "blend_weighted.json").write_text(json.dumps(blend))
    with pytest.raises(DataError, match="blend_weighted.json: not a saved combiner.*NaN"):
        load_stacker(models / "blend_weighted")
    text = (models / "stack_lightgbm.txt").read_text()
    (models / "stack_lightgbm.txt").write_text(text[: len(text) // 3])
    with pytest.raises(DataError, match="stack_lightgbm.json: not a saved combiner"):
        load_stacker(models / "stack_lightgbm")


@pytest.mark.parametrize("names, words", [(["a", "a"], "--backbone: ['a', 'a']: a backbone is named twice"),
                                          (["../x"], "--backbone: backbone '../x' must be letters, digits")])
def test_backbone_flags_are_checked_at_the_entry(tmp_path, names, words):
    res = run_cli("ensemble", "fit", "--name", "toy", "--backbone", *names, "--interim", str(tmp_path),
                  "--out", str(tmp_path / "p"))
    assert res.returncode == 2 and words in res.stderr and res.stderr.count("\n") == 1
    assert not (tmp_path / "p").exists()
