"""Video-level features from the cached frame tables: per backbone, rule outputs, spread, counts, temporal
changes and embedding consistency (vectorised over the frame table), then every backbone side by side in the
video table that training (``ensemble.fit``) and inference (``ensemble.saved``) both build.

Every feature of a video depends on that video's rows alone, so a feature file is read out of core, a part of
whole videos at a time (:func:`part_videos`, one task per part, in this process or on Dask workers), and the
parts' rows are the rows one pass over the whole table would give: peak memory follows the part, not the file.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from common.errors import DataError
from data.sampling import SamplingPolicy
from extract.cache import FeatureFile, Part, read_part

from .rules import Rule, aggregate


def frame_groups(frames: pd.DataFrame, videos: list[str]) -> np.ndarray:
    """Video index of every frame row, (n,) int64, in the order of ``videos``."""
    codes = pd.Categorical(frames["video"], categories=videos).codes.astype(np.int64)
    if (codes < 0).any():
        unknown = frames["video"][codes < 0].iloc[0]
        raise DataError(f"features name a video the tables do not list: {unknown}")
    return codes


BLOCK_ROWS = 4096   # embedding rows per block of the float64 sums and distances: bounds their temporaries


def _blocks(n: int):
    return ((start, min(start + BLOCK_ROWS, n)) for start in range(0, n, BLOCK_ROWS))


def _distances(x: np.ndarray, y) -> np.ndarray:
    """(n,) Euclidean norms of ``x[i] - y(a, b)[i - a]`` in float64, a block of rows at a time; x (n, D)."""
    out = np.empty(len(x))
    for a, b in _blocks(len(x)):
        out[a:b] = np.linalg.norm(x[a:b].astype(np.float64) - y(a, b), axis=1)
    return out


def _consecutive(groups: np.ndarray, values: np.ndarray, n_videos: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and max of |values[i] - values[i-1]| between consecutive rows of one video; NaN below 2 rows.
    ``values`` (n,) or (n, D): for vectors the Euclidean distance (in float64)."""
    same = groups[1:] == groups[:-1]
    if values.ndim == 1:
        step = np.abs(values[1:] - values[:-1])
    else:
        step = _distances(values[1:], lambda a, b: values[a:b].astype(np.float64))
    g = groups[1:][same]
    step = step[same]
    n = np.bincount(g, minlength=n_videos)
    total = np.bincount(g, weights=step, minlength=n_videos)
    peak = np.full(n_videos, -np.inf)
    np.maximum.at(peak, g, step)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / n, np.nan), np.where(n > 0, peak, np.nan)


def backbone_features(frames: pd.DataFrame, embeddings: np.ndarray, videos: list[str],
                      rules: list[Rule]) -> tuple[pd.DataFrame, np.ndarray]:
    """One row per video of ``videos`` (NaN where a video has no frame), and the videos' mean embeddings
    (len(videos), D) float64 (NaN rows for videos without a frame): the centroids the distances are taken to.

    frames: ``video, frame, face, score`` sorted by (video, frame, face); embeddings: (n, D) float32.
    Columns: each rule's label, ``std``, ``n_frames``, ``n_faces``, ``n_crops``, ``temporal_mean``, ``temporal_max``,
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
    out["n_crops"] = count

    # temporal: one score per frame (the most suspicious face), consecutive frames of a video
    per_frame = frames.groupby(["video", "frame"], sort=True)["score"].max().reset_index()
    out["temporal_mean"], out["temporal_max"] = _consecutive(
        frame_groups(per_frame, videos), per_frame["score"].to_numpy(np.float64), n_videos)

    # embedding consistency: distance of each crop to its video's centroid, and between consecutive crops
    sums = np.zeros((n_videos, embeddings.shape[1]))
    for a, b in _blocks(len(embeddings)):
        np.add.at(sums, groups[a:b], embeddings[a:b].astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        centroid = sums / count[:, None]
    dist = _distances(embeddings, lambda a, b: centroid[groups[a:b]])
    d1 = np.bincount(groups, weights=dist, minlength=n_videos)
    d2 = np.bincount(groups, weights=dist**2, minlength=n_videos)
    peak = np.full(n_videos, -np.inf)
    np.maximum.at(peak, groups, dist)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["centroid_mean"] = d1 / count
        out["centroid_max"] = np.where(count > 0, peak, np.nan)
        out["centroid_std"] = np.sqrt(np.maximum(d2 / count - (d1 / count) ** 2, 0))
    first = frames["face"].to_numpy() == 1
    out["embedding_step"], _ = _consecutive(groups[first], embeddings[first], n_videos)
    out.index.name = "video"
    return out, centroid


def video_rows(frames: pd.DataFrame, embeddings: np.ndarray, rules: list[Rule]) -> tuple[pd.DataFrame, np.ndarray]:
    """Features (one row per video that has a frame, indexed by video, sorted) and mean embeddings (n_videos, D)
    float64 of a frame table sorted by (video, frame, face) with its embeddings (n, D)."""
    return backbone_features(frames, embeddings, frames["video"].unique().tolist(), rules)


def complete(pieces: list[pd.DataFrame], names: list[str]) -> pd.DataFrame:
    """Features of disjoint sets of videos as one table over ``names``: NaN for a video without a frame, but
    0 frames, faces and crops."""
    out = pd.concat(pieces).reindex(names)
    counts = ["n_frames", "n_faces", "n_crops"]
    out[counts] = out[counts].fillna(0)
    out.index.name = "video"
    return out


def frame_budget(frames: pd.DataFrame, k: int) -> np.ndarray:
    """(n,) bool: the rows of ``k`` frames per video, evenly spaced over the video's cached frames as the
    ``linspace`` sampling policy picks them (every face of a kept frame); a video with fewer keeps all.
    ``frames``: ``video, frame`` sorted by (video, frame)."""
    video = frames["video"].to_numpy()
    frame = frames["frame"].to_numpy()
    new_video = np.r_[True, video[1:] != video[:-1]]
    new_frame = new_video | np.r_[True, frame[1:] != frame[:-1]]
    video_id = np.cumsum(new_video) - 1
    rank = np.cumsum(new_frame) - 1                   # the frame's position among its video's frames
    rank -= rank[np.flatnonzero(new_video)][video_id]
    n = np.bincount(video_id, weights=new_frame).astype(np.int64)[video_id]    # frames of the row's video
    policy = SamplingPolicy(frames="linspace", count=k)
    keep = np.ones(len(frames), bool)
    for size in np.unique(n[n > k]):                  # the picked positions depend on the frame count alone
        rows = n == size
        keep[rows] = np.isin(rank[rows], policy.select_frames(np.arange(size)))
    return keep


@dataclass(frozen=True)
class PartTask:
    """One task of the out-of-core pass: a part of a feature file, the rules to apply, and the frame budget
    (0: every cached crop)."""

    part: Part
    rules: tuple[Rule, ...]
    frames: int = 0


@dataclass
class PartVideos:
    features: pd.DataFrame        # one row per video of the part, indexed by video
    means: np.ndarray             # (n_videos, D) float64 mean embeddings
    first_rows: np.ndarray        # (n_videos,) the file row of each video's first crop, for errors


def part_videos(task: PartTask) -> PartVideos:
    """The features of a part's videos (a task: plain arguments in, plain tables out)."""
    rows = read_part(task.part)
    frames, embeddings, file_rows = rows.frames, rows.embeddings, rows.file_rows
    if task.frames:
        keep = frame_budget(frames, task.frames)
        frames, embeddings, file_rows = frames[keep].reset_index(drop=True), embeddings[keep], file_rows[keep]
    features, means = video_rows(frames, embeddings, list(task.rules))
    first = np.flatnonzero(~frames["video"].duplicated().to_numpy())
    return PartVideos(features, means, file_rows[first])


def backbone_videos(path: Path, names: list[str], rules: list[Rule], rows_per_task: int, executor,
                    videos_file: Path, frames: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """One backbone's video features over ``names`` (as :func:`complete`) and mean embeddings
    (len(names), D) float64, NaN rows for videos without a frame, read a part at a time on ``executor``.
    Every video of the file must be one of ``names`` (those ``videos_file`` lists). ``frames`` > 0 keeps that
    many frames per video (:func:`frame_budget`)."""
    file = FeatureFile(path)
    index = pd.Index(names)
    means = np.full((len(names), file.dim), np.nan)
    seen = np.zeros(len(names), bool)
    pieces = {}
    tasks = [PartTask(part, tuple(rules), frames) for part in file.parts(rows_per_task)]
    for i, got in executor.map(part_videos, tasks, f"{path.stem} video features", unit="part"):
        position = index.get_indexer(got.features.index)
        unknown = np.flatnonzero(position < 0)
        if len(unknown):
            k = unknown[0]
            raise DataError(f"{path}: row {got.first_rows[k]} names video {got.features.index[k]!r}, which "
                            f"{videos_file} does not list ({len(unknown)} videos like it in rows "
                            f"{tasks[i].part.first_row}-{tasks[i].part.first_row + tasks[i].part.rows - 1}); "
                            "features of another dataset?")
        again = np.flatnonzero(seen[position])
        if len(again):         # parts are cut where row-group statistics promise disjoint videos: a damaged file
            raise DataError(f"{path}: video {got.features.index[again[0]]!r} (row {got.first_rows[again[0]]}) is "
                            "also in another part of the file; rewrite it sorted by video")
        seen[position] = True
        means[position] = got.means
        pieces[i] = got.features
    if not pieces:             # a file without a row: the columns of an empty part
        pieces[0], _ = backbone_features(pd.DataFrame({"video": [], "frame": [], "face": [], "score": []}),
                                         np.zeros((0, file.dim), np.float32), [], rules)
    return complete([pieces[i] for i in sorted(pieces)], names), means


# --- the video table: every backbone's features side by side, as the combiners see them -----------------

def rule_columns(backbones: list[str], rules: list[Rule]) -> list[str]:
    """``<backbone>/<rule>`` for every pair, backbone-major."""
    return [f"{b}/{r.label}" for b in backbones for r in rules]


def _has_mean(means: np.ndarray) -> np.ndarray:
    """(n,) bool: the row of the mean embeddings (n, D) has no NaN (the video has a frame)."""
    out = np.empty(len(means), bool)
    for a, b in _blocks(len(means)):
        out[a:b] = ~np.isnan(means[a:b]).any(axis=1)
    return out


def fit_pca(means: np.ndarray, train: np.ndarray, n_components: int, seed: int) -> dict | None:
    """A PCA of the mean embeddings (n, D) of the ``train`` videos (n,) bool that have a frame, as
    ``{"mean": (D,), "components": (k, D)}`` lists; None when ``n_components`` is 0 or no video qualifies."""
    from sklearn.decomposition import PCA

    train = train & _has_mean(means)
    k = min(n_components, int(train.sum()), means.shape[1])
    if k <= 0:
        return None
    pca = PCA(k, random_state=seed, copy=False).fit(means[train])     # means[train] is a copy: centred in place
    return {"mean": pca.mean_.tolist(), "components": pca.components_.tolist()}


def with_projection(features: pd.DataFrame, means: np.ndarray, pca: dict | None) -> pd.DataFrame:
    """``features`` with the PCA projection of the mean embeddings (n, D) as ``pca<i>`` (NaN without a frame)."""
    if pca is None:
        return features
    center, components = (np.asarray(pca[k], np.float64) for k in ("mean", "components"))
    proj = np.full((len(means), len(components)), np.nan)
    for a, b in _blocks(len(means)):             # a block at a time: no copy of all the means
        block = means[a:b]
        ok = _has_mean(block)
        proj[a:b][ok] = (block[ok] - center) @ components.T
    for i in range(len(components)):
        features[f"pca{i}"] = proj[:, i]
    return features


def video_table(names: list[str], frames: dict, rules: list[Rule], pcas: dict) -> pd.DataFrame:
    """``<backbone>/<feature>`` columns, one row per video of ``names``, from each backbone's (frame table,
    embeddings (n, D)) in memory in ``frames``, with the saved PCA projections of the mean embedding as ``pca<i>``."""
    parts = []
    for backbone, (table, emb) in frames.items():
        feats, means = video_rows(table, emb, rules)
        means = pd.DataFrame(means, index=feats.index).reindex(names).to_numpy()
        parts.append(with_projection(complete([feats], names), means, pcas.get(backbone)).add_prefix(f"{backbone}/"))
    return joined(parts)


def joined(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Backbones' tables over the same videos side by side, indexed 0..n-1."""
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
