"""Video-level features from the cached frame tables: per backbone, rule outputs, spread, counts, temporal
changes and embedding consistency (vectorised over the frame table), then every backbone side by side in the
video table that training (``ensemble.fit``) and inference (``ensemble.saved``) both build."""
from __future__ import annotations

import numpy as np
import pandas as pd

from common.errors import DataError

from .rules import Rule, aggregate


def frame_groups(frames: pd.DataFrame, videos: list[str]) -> np.ndarray:
    """Video index of every frame row, (n,) int64, in the order of ``videos``."""
    codes = pd.Categorical(frames["video"], categories=videos).codes.astype(np.int64)
    if (codes < 0).any():
        unknown = frames["video"][codes < 0].iloc[0]
        raise DataError(f"features name a video the tables do not list: {unknown}")
    return codes


def _consecutive(groups: np.ndarray, values: np.ndarray, n_videos: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and max of |values[i] - values[i-1]| between consecutive rows of one video; NaN below 2 rows.
    ``values`` (n,) or (n, D): for vectors the Euclidean distance."""
    same = groups[1:] == groups[:-1]
    diff = values[1:] - values[:-1]
    step = np.abs(diff) if diff.ndim == 1 else np.linalg.norm(diff, axis=1)
    g = groups[1:][same]
    step = step[same]
    n = np.bincount(g, minlength=n_videos)
    total = np.bincount(g, weights=step, minlength=n_videos)
    peak = np.full(n_videos, -np.inf)
    np.maximum.at(peak, g, step)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / n, np.nan), np.where(n > 0, peak, np.nan)


def backbone_features(frames: pd.DataFrame, embeddings: np.ndarray, videos: list[str],
                      rules: list[Rule]) -> pd.DataFrame:
    """One row per video of ``videos`` (NaN where a video has no frame).

    frames: ``video, frame, face, score`` sorted by (video, frame, face); embeddings: (n, D) float32.
    Columns: each rule's label, ``std``, ``n_frames``, ``n_faces``, ``temporal_mean``, ``temporal_max``,
    ``centroid_mean``, ``centroid_max``, ``centroid_std``, ``embedding_step``.
    """
    n_videos = len(videos)
    groups = frame_groups(frames, videos)
    scores = frames["score"].to_numpy(np.float64)
    out = pd.DataFrame(aggregate(groups, scores, n_videos, rules), index=videos)

    count = np.bincount(groups, minlength=n_videos).astype(np.float64)
    s1 = np.bincount(groups, weights=scores, minlength=n_videos)
    s2 = np.bincount(groups, weights=scores**2, minlength=n_videos)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["std"] = np.sqrt(np.maximum(s2 / count - (s1 / count) ** 2, 0))
    frame_ids = frames[["video", "frame"]].drop_duplicates()
    out["n_frames"] = np.bincount(frame_groups(frame_ids, videos), minlength=n_videos)
    out["n_faces"] = frames.groupby("video")["face"].max().reindex(videos).fillna(0).to_numpy()

    # temporal: one score per frame (the most suspicious face), consecutive frames of a video
    per_frame = frames.groupby(["video", "frame"], sort=True)["score"].max().reset_index()
    out["temporal_mean"], out["temporal_max"] = _consecutive(
        frame_groups(per_frame, videos), per_frame["score"].to_numpy(np.float64), n_videos)

    # embedding consistency: distance of each crop to its video's centroid, and between consecutive crops
    emb = embeddings.astype(np.float64)
    sums = np.zeros((n_videos, emb.shape[1]))
    np.add.at(sums, groups, emb)
    with np.errstate(invalid="ignore", divide="ignore"):
        centroid = sums / count[:, None]
    dist = np.linalg.norm(emb - centroid[groups], axis=1)
    d1 = np.bincount(groups, weights=dist, minlength=n_videos)
    d2 = np.bincount(groups, weights=dist**2, minlength=n_videos)
    peak = np.full(n_videos, -np.inf)
    np.maximum.at(peak, groups, dist)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["centroid_mean"] = d1 / count
        out["centroid_max"] = np.where(count > 0, peak, np.nan)
        out["centroid_std"] = np.sqrt(np.maximum(d2 / count - (d1 / count) ** 2, 0))
    first = frames["face"].to_numpy() == 1
    out["embedding_step"], _ = _consecutive(groups[first], emb[first], n_videos)
    out.index.name = "video"
    return out


# --- the video table: every backbone's features side by side, as the combiners see them -----------------

def rule_columns(backbones: list[str], rules: list[Rule]) -> list[str]:
    """``<backbone>/<rule>`` for every pair, backbone-major."""
    return [f"{b}/{r.label}" for b in backbones for r in rules]


def mean_embeddings(table: pd.DataFrame, emb: np.ndarray, names: list[str]) -> np.ndarray:
    """(n_videos, D) mean embedding per video of ``names``; NaN rows for videos without a frame."""
    return pd.DataFrame(emb).groupby(table["video"].to_numpy()).mean().reindex(names).to_numpy()


def fit_pcas(videos: pd.DataFrame, frames: dict, n_components: int, seed: int) -> dict:
    """Each backbone's PCA of the mean embedding, fitted on train-split videos with a frame, as
    ``{backbone: {"mean": (D,), "components": (k, D)}}`` lists; empty when ``n_components`` is 0."""
    from sklearn.decomposition import PCA

    names, pcas = videos["video"].tolist(), {}
    for backbone, (table, emb) in frames.items():
        if not n_components:
            continue
        means = mean_embeddings(table, emb, names)
        train = videos["split"].eq("train").to_numpy() & ~np.isnan(means).any(axis=1)
        k = min(n_components, int(train.sum()), emb.shape[1])
        if k > 0:
            pca = PCA(k, random_state=seed).fit(means[train])
            pcas[backbone] = {"mean": pca.mean_.tolist(), "components": pca.components_.tolist()}
    return pcas


def video_table(names: list[str], frames: dict, rules: list[Rule], pcas: dict) -> pd.DataFrame:
    """``<backbone>/<feature>`` columns, one row per video of ``names``, from each backbone's (frame table,
    embeddings (n, D)) in ``frames``, with the saved PCA projections of the mean embedding as ``pca<i>``."""
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
