"""``python -m ensemble fit``: video-level features per backbone, rules and learned combiners, calibrated.

Reads ``data/features/<NAME>/<backbone>.parquet`` and ``data/interim/<NAME>/videos.parquet``. Learned combiners
train on the ``blend`` split only, with family-grouped out-of-fold (OOF) predictions over its folds; each
method's calibrator (clipping, Platt, isotonic) is chosen by cross-fitting on those OOF predictions. The final
models are refit on the whole blend split and applied to ``test`` and unlabelled videos. Videos without a single
frame get the blend split's FAKE share (the prior).

Writes ``data/predictions/<NAME>/videos.parquet`` (one row per video: ``video, split, label, fold, family,
n_frames``, ``manipulation`` when the metadata has a ``method`` column, then one ``<a>/<b>`` column per method;
blend rows hold OOF predictions) and ``fit.json`` (each method's OOF log-loss and calibrator), and the
models to ``models/<NAME>/ensemble/`` as JSON and LightGBM text.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

from data.atomic import atomic_dir, write_json, write_text
from data.config import choice, positive_int, section
from data.errors import DataError

from .calibration import Calibrator, choose
from .metrics import log_loss
from .rules import Rule
from .stackers import LightGBMStack, LogisticStack, WeightedBlend
from .video_features import backbone_features

META = ["video", "split", "label", "fold", "family", "n_frames"]
SCORE_FEATURES = ("std", "temporal_mean", "temporal_max")   # with the rule outputs: the "scores" feature set
MANIPULATION = "method"          # optional metadata column (e.g. DFDC-like fake methods), passed on as "manipulation"


def load_inputs(interim: Path, features_dir: Path, backbones: list[str]):
    from extract.features import load_features   # reads the feature files; TensorFlow is not needed

    path = interim / "videos.parquet"
    if not path.exists():
        raise DataError(f"{path}: not found; run 'make data' first")
    videos = pd.read_parquet(path).sort_values("video").reset_index(drop=True)
    frames = {}
    for name in backbones:
        f = features_dir / f"{name}.parquet"
        if not f.exists():
            raise DataError(f"{f}: not found; run 'make features' (python -m extract features) first")
        frames[name] = load_features(f)
    return videos, frames


def build_table(videos: pd.DataFrame, frames: dict, rules: list[Rule], pca_components: int, seed: int
                ) -> tuple[pd.DataFrame, dict]:
    """All video-level features: ``<backbone>/<feature>`` columns, one row per video (sorted by video), and
    each backbone's PCA of the mean embedding (fitted on train-split videos) as ``{"mean", "components"}``."""
    names = videos["video"].tolist()
    pcas = {}
    for backbone, (table, emb) in frames.items():
        if not pca_components:
            continue
        means = mean_embeddings(table, emb, names)
        train = videos["split"].eq("train").to_numpy() & ~np.isnan(means).any(axis=1)   # with a frame
        k = min(pca_components, int(train.sum()), emb.shape[1])
        if k > 0:
            pca = PCA(k, random_state=seed).fit(means[train])
            pcas[backbone] = {"mean": pca.mean_.tolist(), "components": pca.components_.tolist()}
    return video_table(names, frames, rules, pcas), pcas


def mean_embeddings(table: pd.DataFrame, emb: np.ndarray, names: list[str]) -> np.ndarray:
    """(n_videos, D) mean embedding per video of ``names``; NaN rows for videos without a frame."""
    return pd.DataFrame(emb).groupby(table["video"].to_numpy()).mean().reindex(names).to_numpy()


def video_table(names: list[str], frames: dict, rules: list[Rule], pcas: dict) -> pd.DataFrame:
    """The features of ``names`` from each backbone's frame table, with the saved PCA projections."""
    parts = []
    for backbone, (table, emb) in frames.items():
        feats = backbone_features(table, emb, names, rules)
        if backbone in pcas:
            means = mean_embeddings(table, emb, names)
            center, components = (np.asarray(pcas[backbone][k], np.float64) for k in ("mean", "components"))
            proj = np.full((len(names), len(components)), np.nan)
            ok = ~np.isnan(means).any(axis=1)
            proj[ok] = (means[ok] - center) @ components.T
            for i in range(len(components)):
                feats[f"pca{i}"] = proj[:, i]
        parts.append(feats.add_prefix(f"{backbone}/"))
    return pd.concat(parts, axis=1).reset_index(drop=True)


def rule_columns(backbones: list[str], rules: list[Rule]) -> list[str]:
    return [f"{b}/{r.label}" for b in backbones for r in rules]


def has_frames(X: pd.DataFrame, backbones: list[str]) -> np.ndarray:
    """(n_videos,) bool: the video has at least one scored crop in some backbone."""
    return np.logical_or.reduce([X[f"{b}/n_frames"].to_numpy() > 0 for b in backbones])


def plain_mean(X: pd.DataFrame, backbones: list[str]) -> np.ndarray:
    """(n_videos,) the uncalibrated ``blend/mean``: each backbone's mean rule, averaged across backbones."""
    return X[[f"{b}/mean" for b in backbones]].mean(axis=1).to_numpy()


def fill_rules(X: pd.DataFrame, rule_cols: list[str], prior: float) -> pd.DataFrame:
    """Rule outputs as probabilities: a video without a frame gets the prior. Changes ``X`` in place."""
    X[rule_cols] = X[rule_cols].fillna(prior).clip(0, 1)
    return X


def fit_predict(method, X: pd.DataFrame, y: np.ndarray, folds: np.ndarray, blend: np.ndarray, lgb_inner: bool):
    """OOF predictions on blend rows and refit predictions on all rows; returns (oof, all, refit model)."""
    Xb, yb, fb = X[blend], y[blend], folds[blend]
    oof = np.empty(len(Xb))
    fold_ids = np.unique(fb)
    rounds = []
    for i, k in enumerate(fold_ids):
        held = fb == k
        train = ~held
        if lgb_inner:
            inner = fb == fold_ids[(i + 1) % len(fold_ids)]
            model = method().fit(Xb[train & ~inner], yb[train & ~inner], valid=(Xb[inner], yb[inner]))
            rounds.append(model.best_iteration)
        else:
            model = method().fit(Xb[train], yb[train])
        oof[held] = model.predict_proba(Xb[held])
    final = method().fit(Xb, yb, rounds=max(1, int(np.median(rounds)))) if lgb_inner else method().fit(Xb, yb)
    return oof, final.predict_proba(X), final


def run_fit(config: dict, interim: Path, features_dir: Path, out_dir: Path, models_dir: Path,
            backbones: list[str]) -> pd.DataFrame:
    t = section(config, "ensemble")
    rules = [Rule.parse(r, f"{t['_source']} rules") for r in t["rules"]]
    if "mean" not in [r.label for r in rules]:
        raise DataError(f"{t['_source']}: rules must include \"mean\" (blend/mean averages each backbone's mean)")
    seed = int(config["seed"])
    videos, frames = load_inputs(interim, features_dir, backbones)
    X, pcas = build_table(videos, frames, rules, positive_int(t, "pca_components", 0), seed)
    blend = (videos["split"] == "blend").to_numpy()
    y_all = videos["label"].astype("float64").to_numpy()
    if blend.sum() == 0 or len(np.unique(y_all[blend])) < 2:
        raise DataError(f"{interim}/videos.parquet: the blend split needs labelled FAKE and REAL videos")
    y = np.nan_to_num(y_all).astype(int)
    folds = videos["fold"].to_numpy()
    if len(np.unique(folds[blend])) < 3:
        raise DataError(f"{interim}/videos.parquet: the blend split needs at least 3 family-grouped folds "
                        "(LightGBM early-stops on one fold while another is held out); raise [splits] folds "
                        "or the blend share")
    prior = float(y_all[blend].mean())
    seen = has_frames(X, backbones)

    rule_cols = rule_columns(backbones, rules)
    P = fill_rules(X, rule_cols, prior)[rule_cols]
    out = videos[META].copy()
    if MANIPULATION in videos:
        out["manipulation"] = videos[MANIPULATION].to_numpy()
    for col in rule_cols:
        out[col] = P[col].to_numpy()
    out["blend/mean"] = plain_mean(P, backbones)

    lgb_params = dict(config["ensemble"]["lightgbm"])
    where = {**lgb_params, "_source": f"{t['_source']}.lightgbm"}
    boost_from = choice(where, "boost_from", ("logistic", "weighted", "none"))
    lgb_columns = list(X.columns) if choice(where, "features", ("scores", "all")) == "all" else \
        [c for c in X.columns if c in rule_cols or c.split("/", 1)[1] in SCORE_FEATURES]
    monotone = bool(lgb_params.pop("monotone"))
    for key in ("boost_from", "features"):
        del lgb_params[key]
    stack_args = dict(base_columns=None if boost_from == "none" else rule_cols, base=boost_from,
                      base_c=float(t["logistic_c"]), monotone_columns=rule_cols if monotone else None)
    methods = {
        "blend/weighted": (lambda: WeightedBlend(rule_cols), P, False),
        "stack/logistic": (lambda: LogisticStack(rule_cols, float(t["logistic_c"])), P, False),
        "stack/lightgbm": (lambda: LightGBMStack(lgb_columns, lgb_params, seed, **stack_args), X, True),
    }
    report, saved = {"prior": prior, "methods": {}}, {}
    clip_eps = [float(e) for e in t["clip_eps"]]
    frameless = ~seen[blend]          # blend videos without a face: scored at the prior, as written

    def calibrate(name: str, oof: np.ndarray, full: np.ndarray) -> Calibrator:
        oof = np.where(frameless, prior, oof)
        calibrator, cal_scores, oof_cal = choose(oof, y[blend], folds[blend], clip_eps)
        oof_cal[frameless] = prior
        pred = calibrator.transform(full)
        pred[blend] = oof_cal
        pred[~seen] = prior
        out[name] = pred
        report["methods"][name] = {"oof_log_loss_raw": log_loss(y[blend], oof), "calibrators": cal_scores,
                                   "calibrator": calibrator.name, "oof_log_loss": log_loss(y[blend], oof_cal)}
        return calibrator

    for name, (make, data, inner) in methods.items():
        oof, full, model = fit_predict(make, data, y, folds, blend, inner)
        saved[name] = (model, calibrate(name, oof, full))
    # the plain mean is not learned; its calibrator is still chosen on the blend split
    mean = out["blend/mean"].to_numpy()
    saved["blend/mean"] = (None, calibrate("blend/mean", mean[blend], mean))
    report["best_method"] = min(report["methods"], key=lambda m: report["methods"][m]["oof_log_loss"])

    with atomic_dir(models_dir) as tmp:
        for name, (model, calibrator) in saved.items():
            stem = name.replace("/", "_")
            if isinstance(model, LightGBMStack):
                write_text(tmp / f"{stem}.txt", model.model_text())
            write_json(tmp / f"{stem}.json", {**(model.to_json() if model else {}), "calibrator": calibrator.to_json()})
        write_json(tmp / "ensemble.json", {"rules": [r.label for r in rules], "backbones": backbones,
                                           "prior": prior, "pca": pcas, "best_method": report["best_method"]})
    with atomic_dir(out_dir) as tmp:
        out.to_parquet(tmp / "videos.parquet", index=False)
        write_json(tmp / "fit.json", report)
    return out, report


def load_stacker(path: Path):
    """A saved combiner and its calibrator, read from JSON or LightGBM text: no pickle, no code execution.
    The plain mean (``blend_mean``) has only a calibrator: the model is None."""
    obj = json.loads(path.with_suffix(".json").read_text())
    calibrator = Calibrator.from_json(obj["calibrator"])
    if path.with_suffix(".txt").exists():
        return LightGBMStack.from_text(path.with_suffix(".txt").read_text(), obj), calibrator
    if "weights" in obj:
        return WeightedBlend.from_json(obj), calibrator
    if "coef" in obj:
        return LogisticStack.from_json(obj), calibrator
    return None, calibrator


class SavedEnsemble:
    """The combiners ``ensemble fit`` saved in ``models/<NAME>/ensemble/``, applied to new videos' features."""

    def __init__(self, folder: Path):
        path = folder / "ensemble.json"
        if not path.exists():
            raise DataError(f"{path}: not found; run 'make ensemble' (python -m ensemble fit) first")
        meta = json.loads(path.read_text())
        self.folder, self.backbones, self.prior = folder, meta["backbones"], float(meta["prior"])
        self.rules = [Rule.parse(r, str(path)) for r in meta["rules"]]
        self.pcas, self.best_method = meta["pca"], meta["best_method"]

    def methods(self) -> list[str]:
        saved = [p.stem.replace("_", "/", 1) for p in sorted(self.folder.glob("*.json")) if p.stem != "ensemble"]
        return rule_columns(self.backbones, self.rules) + saved

    def predict(self, names: list[str], frames: dict, method: str) -> np.ndarray:
        """P(FAKE) of each video of ``names`` by ``method``; ``frames``: {backbone: (frame table, embeddings)}."""
        if method not in self.methods():
            raise DataError(f"{self.folder}: no method {method!r} (have: {', '.join(self.methods())})")
        rule_cols = rule_columns(self.backbones, self.rules)
        mine = {}
        for b in self.backbones:
            if b not in frames:
                raise DataError(f"{self.folder}: the ensemble needs frame scores of backbone {b!r}")
            table, emb = frames[b]
            keep = table["video"].isin(names).to_numpy()
            mine[b] = (table[keep].reset_index(drop=True), emb[keep])
        X = fill_rules(video_table(names, mine, self.rules, self.pcas), rule_cols, self.prior)
        if method in rule_cols:
            pred = X[method].to_numpy(np.float64)
        else:
            model, calibrator = load_stacker(self.folder / method.replace("/", "_"))
            pred = calibrator.transform(plain_mean(X, self.backbones) if model is None else model.predict_proba(X))
        return np.where(has_frames(X, self.backbones), pred, self.prior)
