"""Video-level features per backbone, from the cached frame table: rule outputs, spread, counts, temporal
changes and embedding consistency. Everything is vectorised over the frame table."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .rules import Rule, aggregate


def frame_groups(frames: pd.DataFrame, videos: list[str]) -> np.ndarray:
    """Video index of every frame row, (n,) int64, in the order of ``videos``."""
    codes = pd.Categorical(frames["video"], categories=videos).codes.astype(np.int64)
    if (codes < 0).any():
        unknown = frames["video"][codes < 0].iloc[0]
        raise ValueError(f"features name a video the tables do not list: {unknown}")
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
