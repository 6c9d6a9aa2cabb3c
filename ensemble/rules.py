"""Aggregation rules: frame scores -> one score per video, vectorised over the whole frame table.

Every rule takes ``groups`` (n,) int video index in [0, n_videos) and ``scores`` (n,) P(FAKE) per frame and
returns (n_videos,) float64, NaN for a video with no frame (callers fill in a prior). No Python loop runs per
video: scores are sorted once within videos and order statistics are read off group offsets.

A rule is named ``name`` or ``name:param`` in the config, e.g. ``trimmed_mean:0.1`` or ``confident:0.8``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from common.errors import DataError

LOGIT_MEAN_EPS = 1e-7   # the logit_mean rule clips frame scores to [eps, 1 - eps] before the logit; not
                        # calibration.LOGIT_EPS (1e-6): the rule's saved outputs depend on this value


@dataclass
class Grouped:
    """Scores sorted ascending inside each video, with per-video offsets and counts."""

    sorted_scores: np.ndarray   # (n,)
    start: np.ndarray           # (G,) first position of each video in sorted_scores
    count: np.ndarray           # (G,) frames per video (0 allowed)
    groups: np.ndarray          # (n,) original group index per frame
    scores: np.ndarray          # (n,) original scores
    cumsum: np.ndarray          # (n + 1,) cumulative sum of sorted_scores, starting at 0
    key: np.ndarray             # (n,) sorted (video + score / 2): the sort key, for threshold look-ups

    @classmethod
    def build(cls, groups: np.ndarray, scores: np.ndarray, n_videos: int) -> Grouped:
        groups = np.asarray(groups, np.int64)
        scores = np.asarray(scores, np.float64)
        if len(scores) and not (scores.min() >= 0 and scores.max() <= 1):
            raise ValueError("frame scores must lie in [0, 1]")
        # one float sort of (video + score / 2), several times faster than lexsort; its rounding (about
        # 1e-11 at 1e5 videos) bounds the error of the order statistics read off it
        key = groups + scores * 0.5
        key.sort(kind="stable")                      # timsort: fast on tables already sorted by video
        count = np.bincount(groups, minlength=n_videos)
        start = np.concatenate([[0], np.cumsum(count)[:-1]])
        s = np.floor(key)                            # the video index (score / 2 < 1), then the score
        np.subtract(key, s, out=s)
        s *= 2.0
        cumsum = np.empty(len(s) + 1)
        cumsum[0] = 0.0
        np.cumsum(s, out=cumsum[1:])
        return cls(s, start, count, groups, scores, cumsum, key)

    def above(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """(sum, count) of scores > t per video, read off the sorted scores (no pass over the frames)."""
        videos = np.arange(len(self.count))
        first = np.searchsorted(self.key, videos + t * 0.5, side="right")
        end = self.start + self.count
        n = end - first
        return self.cumsum[end] - self.cumsum[first], n

    def below(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """(sum, count) of scores < t per video."""
        videos = np.arange(len(self.count))
        last = np.searchsorted(self.key, videos + t * 0.5, side="left")
        return self.cumsum[last] - self.cumsum[self.start], last - self.start

    def range_mean(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Mean of sorted positions [start + lo, start + hi) per video; NaN where the range is empty."""
        a, b = self.start + lo, self.start + hi
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(hi > lo, (self.cumsum[b] - self.cumsum[a]) / (hi - lo), np.nan)

    def at(self, pos: np.ndarray) -> np.ndarray:
        """Sorted score at within-video position ``pos`` (clipped into range); NaN for empty videos."""
        idx = self.start + np.clip(pos, 0, np.maximum(self.count - 1, 0))
        out = self.sorted_scores[np.minimum(idx, len(self.sorted_scores) - 1)] if len(self.sorted_scores) else \
            np.zeros(len(self.count))
        return np.where(self.count > 0, out, np.nan)


def _mean(g: Grouped, _=None):
    return g.range_mean(np.zeros_like(g.count), g.count)


def _median(g: Grouped, _=None):
    return _quantile(g, 0.5)


def _max(g: Grouped, _=None):
    return g.at(g.count - 1)


def _min(g: Grouped, _=None):
    return g.at(np.zeros_like(g.count))


def _quantile(g: Grouped, q: float):
    """np.quantile's default (linear) interpolation."""
    pos = q * (g.count - 1).clip(min=0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.ceil(pos).astype(np.int64)
    a, b = g.at(lo), g.at(hi)
    return a + (pos - lo) * (b - a)


def _trimmed_mean(g: Grouped, p: float):
    """scipy.stats.trim_mean: cut int(p * n) frames from each end."""
    cut = np.floor(p * g.count).astype(np.int64)
    return g.range_mean(cut, g.count - cut)


def _topk_mean(g: Grouped, k: float):
    k = np.minimum(int(k), g.count)
    return g.range_mean(g.count - k, g.count)


def _logit_mean(g: Grouped, _=None):
    p = np.clip(g.scores, LOGIT_MEAN_EPS, 1 - LOGIT_MEAN_EPS)
    np.log(np.divide(p, 1 - p, out=p), out=p)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_logit = np.bincount(g.groups, weights=p, minlength=len(g.count)) / g.count
    return 1 / (1 + np.exp(-mean_logit))


def _frac_above(g: Grouped, t: float):
    _, n_above = g.above(t)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(g.count > 0, n_above / g.count, np.nan)


def _confident(g: Grouped, t: float):
    """DFDC 1st place's confident_strategy: if more than len // 2.5 and more than 11 frames score above t,
    the mean of those; else if more than 90 % of frames score below 0.2, the mean of those; else the mean."""
    hi_sum, n_hi = g.above(t)
    lo_sum, n_lo = g.below(0.2)
    with np.errstate(invalid="ignore", divide="ignore"):
        hi_mean, lo_mean = hi_sum / n_hi, lo_sum / n_lo
    size = g.count
    confident_fake = (n_hi > np.floor(size / 2.5)) & (n_hi > 11)
    confident_real = n_lo > 0.9 * size
    out = np.where(confident_fake, hi_mean, np.where(confident_real, lo_mean, _mean(g)))
    return np.where(size > 0, out, np.nan)


def _confidence_weighted(g: Grouped, _=None):
    """DFDC 3rd place: mean weighted by |p - 0.5|; the plain mean where every weight is 0."""
    w = np.abs(g.scores - 0.5)
    wsum = np.bincount(g.groups, weights=w, minlength=len(g.count))
    wp = np.bincount(g.groups, weights=w * g.scores, minlength=len(g.count))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(wsum > 0, wp / wsum, _mean(g))


RULES: dict[str, tuple[Callable, float | None]] = {   # name: (function, default parameter)
    "mean": (_mean, None), "median": (_median, None), "max": (_max, None), "min": (_min, None),
    "trimmed_mean": (_trimmed_mean, 0.1), "topk_mean": (_topk_mean, 5), "quantile": (_quantile, 0.9),
    "logit_mean": (_logit_mean, None), "frac_above": (_frac_above, 0.5), "confident": (_confident, 0.8),
    "confidence_weighted": (_confidence_weighted, None),
}


PARAMETER_DOMAINS: dict[str, tuple[Callable[[float], bool], str]] = {   # name: (check, what it must be)
    "trimmed_mean": (lambda p: 0 <= p < 0.5, "a fraction in [0, 0.5)"),
    "topk_mean": (lambda p: 1 <= p <= 1e6 and p == int(p), "a whole number of frames in [1, 1000000]"),
    "quantile": (lambda p: 0 <= p <= 1, "a quantile in [0, 1]"),
    "frac_above": (lambda p: 0 <= p <= 1, "a threshold in [0, 1]"),
    "confident": (lambda p: 0 <= p <= 1, "a threshold in [0, 1]"),
}


@dataclass(frozen=True)
class Rule:
    name: str
    param: float | None

    @property
    def label(self) -> str:
        return self.name if self.param is None else f"{self.name}:{self.param:g}"

    @classmethod
    def parse(cls, text: str, where: str = "rules") -> Rule:
        name, _, param = text.partition(":")
        if name not in RULES:
            raise DataError(f"{where}: unknown rule {text!r}; known: {', '.join(RULES)}")
        default = RULES[name][1]
        if param and default is None:
            raise DataError(f"{where}: rule {name!r} takes no parameter")
        try:
            value = float(param) if param else default
        except ValueError:
            raise DataError(f"{where}: rule {text!r}: parameter must be a number") from None
        if name in PARAMETER_DOMAINS and not PARAMETER_DOMAINS[name][0](value):    # NaN fails every check
            raise DataError(f"{where}: rule {text!r}: the parameter must be {PARAMETER_DOMAINS[name][1]}")
        return cls(name, value)


def aggregate(groups: np.ndarray, scores: np.ndarray, n_videos: int, rules: list[Rule]) -> dict[str, np.ndarray]:
    """Every rule's per-video score: {rule label: (n_videos,) float64, NaN for videos without frames}."""
    g = Grouped.build(groups, scores, n_videos)
    return {rule.label: RULES[rule.name][0](g, rule.param) for rule in rules}
