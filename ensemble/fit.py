"""``python -m ensemble fit``: video-level features per backbone, rules and learned combiners, calibrated.

Reads ``data/features/<NAME>/<backbone>.parquet`` and ``data/interim/<NAME>/videos.parquet``. Learned combiners
train on the ``blend`` split only, with family-grouped out-of-fold (OOF) predictions over its folds; each
method's calibrator (clipping, Platt, isotonic) is chosen by cross-fitting on those OOF predictions. The final
models are refit on the whole blend split and applied to ``test`` and unlabelled videos. Videos without a single
frame get the blend split's FAKE share (the prior).

Writes ``data/predictions/<NAME>/videos.parquet`` (one row per video: ``video, split, label, fold, family,
n_frames``, ``manipulation`` when the metadata has a ``method`` column, then one ``<a>/<b>`` column per method;
blend rows hold OOF predictions) and ``fit.json`` (each method's OOF log-loss and calibrator), and the
models to ``models/<NAME>/ensemble/`` (see ``ensemble.saved``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from common.atomic import atomic_dir, locked
from common.errors import DataError
from common.executor import ExecutorSpec
from common.metrics import log_loss
from data.tables import load_videos
from data.training_videos import TrainingRecord
from extract.cache import FeatureFile

from .records import CHOSEN, FIT_FILE, PLAIN_MEAN, Choice, FitRecord, MethodFit
from .saved import EnsembleMeta, write_ensemble
from .selection import (
    Candidate,
    choose,
    fit_candidates,
    linear_candidates,
    nested,
    one_blas_thread,
)
from .settings import MIN_NESTED_FOLDS, EnsembleSettings, load_settings
from .stackers import Alias, Column, LightGBMStack, RankMean
from .video_features import (
    backbone_videos,
    fill_rules,
    fit_pca,
    has_frames,
    joined,
    plain_mean,
    rule_columns,
    with_projection,
)

LOCAL = ExecutorSpec()
META = ["video", "split", "label", "fold", "family", "n_frames"]
SCORE_FEATURES = ("std", "temporal_mean", "temporal_max")   # with the rule outputs: the "scores" feature set
MANIPULATION = "method"          # optional metadata column (e.g. DFDC-like fake methods), passed on as "manipulation"


def load_inputs(interim: Path, features_dir: Path, backbones: list[str]) -> tuple[pd.DataFrame, dict[str, Path]]:
    """The videos table (sorted by video) and {backbone: its feature file}."""
    path = interim / "videos.parquet"
    videos = load_videos(interim)
    unlabelled = ((videos["split"] == "blend") & videos["label"].isna()).to_numpy()
    if unlabelled.any():
        i = int(unlabelled.nonzero()[0][0])
        raise DataError(f"{path}: row {i} (video {videos['video'].iloc[i]}) is in the blend split without a label; "
                        "the combiners learn from every blend video")
    files = {}
    for name in backbones:
        files[name] = features_dir / f"{name}.parquet"
        if not files[name].exists():
            raise DataError(f"{files[name]}: not found; run 'make features' (python -m extract features) first")
        FeatureFile(files[name])        # the schema of every file is checked before any long work
    return videos.sort_values("video").reset_index(drop=True), files


def backbone_table(videos: pd.DataFrame, path: Path, settings: EnsembleSettings, executor, interim: Path,
                   frames: int = 0) -> tuple[pd.DataFrame, dict | None]:
    """One backbone's video features with its PCA columns (one row per video, in order), read out of core,
    and the PCA fitted on train-split videos (None when off). ``frames`` > 0: that many frames per video."""
    names = videos["video"].tolist()
    features, means = backbone_videos(path, names, list(settings.rules), settings.rows_per_task, executor,
                                      interim / "videos.parquet", frames)
    blend = (videos["split"] == "blend").to_numpy()
    if not (features["n_frames"].to_numpy()[blend] > 0).any():
        raise DataError(f"{path}: no frame of any blend-split video ({FeatureFile(path).rows} rows); the "
                        "combiners would learn from the prior alone. Rerun 'make features'")
    pca = fit_pca(means, videos["split"].eq("train").to_numpy(), settings.pca_components, settings.seed) \
        if settings.pca_components else None
    return with_projection(features, means, pca), pca


@dataclass
class BlendData:
    """Everything the combiners learn from, one row per video (sorted by video)."""

    X: pd.DataFrame            # every video feature; rule columns filled with the prior and clipped to [0, 1]
    rule_cols: list[str]
    y: np.ndarray              # (n,) 0/1, 0 where unlabelled
    folds: np.ndarray          # (n,) family-grouped fold inside the split
    blend: np.ndarray          # (n,) bool: the blend split
    prior: float               # the blend split's FAKE share
    seen: np.ndarray           # (n,) bool: the video has a scored crop

    @property
    def P(self) -> pd.DataFrame:
        """The rule columns as a new table (n, len(rule_cols))."""
        return self.X[self.rule_cols]


def blend_data(videos: pd.DataFrame, files: dict[str, Path], settings: EnsembleSettings, interim: Path,
               executor: ExecutorSpec = LOCAL, frames: int = 0) -> tuple[BlendData, dict]:
    """The video table and labels the combiners use, and the PCA of each backbone's mean embedding. The feature
    files are read a part at a time, by ``executor``; one backbone's mean embeddings are in memory at a time.
    ``frames`` > 0 keeps that many frames per video (the frame-budget protocol)."""
    blend = (videos["split"] == "blend").to_numpy()       # the blend split is checked before the long work
    y_all = videos["label"].astype("float64").to_numpy()
    if blend.sum() == 0 or len(np.unique(y_all[blend])) < 2:
        raise DataError(f"{interim}/videos.parquet: the blend split needs labelled FAKE and REAL videos")
    folds = videos["fold"].to_numpy()
    if len(np.unique(folds[blend])) < 3:
        raise DataError(f"{interim}/videos.parquet: the blend split needs at least 3 family-grouped folds "
                        "(LightGBM early-stops on one fold while another is held out); raise [splits] folds "
                        "or the blend share")
    if settings.nested and len(np.unique(folds[blend])) < MIN_NESTED_FOLDS:
        raise DataError(f"{interim}/videos.parquet: the blend split has {len(np.unique(folds[blend]))} "
                        f"family-grouped folds; the nested choice ([ensemble] nested) needs {MIN_NESTED_FOLDS}: "
                        "raise [splits] folds or set nested = false")
    backbones, parts, pcas = list(files), [], {}
    with executor.open() as ex:
        for backbone, path in files.items():
            table, pca = backbone_table(videos, path, settings, ex, interim, frames)
            parts.append(table.add_prefix(f"{backbone}/"))
            if pca is not None:
                pcas[backbone] = pca
    X = joined(parts)
    prior = float(y_all[blend].mean())
    seen = has_frames(X, backbones)
    rule_cols = rule_columns(backbones, list(settings.rules))
    fill_rules(X, rule_cols, prior)
    return BlendData(X, rule_cols, np.nan_to_num(y_all).astype(int), folds, blend, prior, seen), pcas


def candidates(settings: EnsembleSettings, data: BlendData) -> dict[str, Candidate]:
    """{method: candidate} of the combiners fitted on the blend split, in order (an average after its members).
    The plain mean and the rank mean are references: calibrated and scored, never chosen."""
    lgb, rule_cols = settings.lightgbm, data.rule_cols
    lgb_columns = list(data.X.columns) if lgb.features == "all" else \
        [c for c in data.X.columns if c in rule_cols or c.split("/", 1)[1] in SCORE_FEATURES]
    stack_args = dict(base_columns=None if lgb.boost_from == "none" else rule_cols, base=lgb.boost_from,
                      base_c=settings.logistic_c, monotone_columns=rule_cols if lgb.monotone else None)
    return {
        "blend/mean": Candidate(lambda: Column(PLAIN_MEAN), reference=True),
        "blend/rank_mean": Candidate(lambda: RankMean(rule_cols), reference=True),
        **linear_candidates(rule_cols, settings, settings.seed, prefix=("blend/", "stack/")),
        "stack/lightgbm": Candidate(lambda: LightGBMStack(lgb_columns, dict(lgb.params), settings.seed,
                                                          **stack_args), early_stopping=True),
        "stack/average": Candidate(members=("stack/lightgbm", "stack/logistic")),
    }


def predictions_table(videos: pd.DataFrame, data: BlendData, backbones: list[str]) -> pd.DataFrame:
    """The metadata columns and every rule column, plus the uncalibrated plain mean."""
    out = videos[META].copy()
    if MANIPULATION in videos:
        out["manipulation"] = videos[MANIPULATION].to_numpy()
    P = data.P                        # a copy of the rule columns: take it once
    for col in data.rule_cols:
        out[col] = P[col].to_numpy()
    out[PLAIN_MEAN] = plain_mean(P, backbones)
    return out


def fit_methods(settings: EnsembleSettings, data: BlendData, out: pd.DataFrame, family: np.ndarray
                ) -> tuple[FitRecord, dict]:
    """Fit every candidate on the blend split and add its column to ``out`` (blend rows: calibrated OOF
    predictions; other rows: the refit model, calibrated; videos without a face: the prior). Choose the method,
    and with ``nested`` add ``stack/chosen``: the nested OOF predictions of the whole choice on blend rows, the
    chosen method's elsewhere. Returns the record (``fit.json``) and {method: (combiner or None, calibrator)} to
    save."""
    b = data.blend
    X = data.X.assign(**{PLAIN_MEAN: out[PLAIN_MEAN].to_numpy()})
    Xb, yb, fb, gb, frameless = X[b], data.y[b], data.folds[b], family[b], ~data.seen[b]
    cands = candidates(settings, data)
    eps = list(settings.clip_eps)
    fitted = fit_candidates(cands, Xb, yb, fb, gb, eps, frameless, data.prior)
    methods, saved = {}, {}
    for name, f in fitted.items():
        pred = f.predict(X)
        pred[b] = f.oof_calibrated
        pred[~data.seen] = data.prior
        out[name] = pred
        methods[name] = MethodFit(cands[name].reference, log_loss(yb, f.oof), f.calibrators, f.calibrator.name,
                                  f.loss)
        saved[name] = (None if isinstance(f.model, Column) else f.model, f.calibrator)
    best = choose(fitted, cands)
    if not settings.nested:
        return FitRecord(data.prior, methods, best, Choice(best, fitted[best].loss)), saved
    bar = tqdm(total=len(np.unique(fb)), desc="ensemble: nested choice", unit="fold", leave=False)
    oof, per_fold = nested(cands, Xb, yb, fb, gb, eps, frameless, data.prior, lambda *_: bar.update())
    bar.close()
    out[CHOSEN] = out[best]
    out.loc[b, CHOSEN] = oof
    saved[CHOSEN] = (Alias(best), fitted[best].calibrator)
    choice = Choice(best, fitted[best].loss, log_loss(yb, oof), tuple(per_fold))
    return FitRecord(data.prior, methods, CHOSEN, choice), saved


def run_fit(config: dict, interim: Path, features_dir: Path, out_dir: Path, models_dir: Path,
            backbones: list[str] | None = None, executor: ExecutorSpec = LOCAL
            ) -> tuple[pd.DataFrame, dict]:
    """Fit every combiner and write the predictions table, ``fit.json`` and the saved ensemble; returns the
    table and ``fit.json``'s content. ``backbones`` (checked by ``settings.backbones``) defaults to the config's
    ``[extract] backbones``."""
    settings = load_settings(config)
    backbones = list(backbones or settings.backbones)
    videos, files = load_inputs(interim, features_dir, backbones)
    data, pcas = blend_data(videos, files, settings, interim, executor)
    out = predictions_table(videos, data, backbones)
    with one_blas_thread():
        record, saved = fit_methods(settings, data, out, videos["family"].to_numpy())

    meta = EnsembleMeta(tuple(backbones), tuple(settings.rules), data.prior, pcas, record.best_method)
    with locked(out_dir.with_name(f"{out_dir.name}.fit")):    # overlapping fits never mix models and predictions
        write_ensemble(models_dir, saved, meta,
                       TrainingRecord.of(videos, "blend", interim / "videos.parquet").to_json())
        with atomic_dir(out_dir) as tmp:
            out.to_parquet(tmp / "videos.parquet", index=False)
            record.write(tmp / FIT_FILE)
    return out, record.to_json()
