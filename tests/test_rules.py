"""Every vectorised rule equals a plain per-video reference, on random data with 0- and 1-frame videos."""
import numpy as np
import pytest

from common.errors import DataError
from ensemble.rules import RULES, Rule, aggregate

RULE_SPECS = ["mean", "median", "max", "min", "trimmed_mean:0.1", "trimmed_mean:0.25", "topk_mean:3",
              "topk_mean:5", "quantile:0.9", "quantile:0.25", "logit_mean", "frac_above:0.5", "frac_above:0.8",
              "confident:0.8", "confident:0.6", "confidence_weighted"]


def confident_strategy(pred, t=0.8):
    """DFDC 1st place (selimsef/dfdc_deepfake_challenge), verbatim semantics."""
    pred = np.array(pred)
    sz = len(pred)
    fakes = np.count_nonzero(pred > t)
    if fakes > sz // 2.5 and fakes > 11:
        return np.mean(pred[pred > t])
    elif np.count_nonzero(pred < 0.2) > 0.9 * sz:
        return np.mean(pred[pred < 0.2])
    else:
        return np.mean(pred)


def reference(rule: Rule, p: np.ndarray) -> float:
    if len(p) == 0:
        return np.nan
    x = rule.param
    if rule.name == "mean":
        return p.mean()
    if rule.name == "median":
        return np.median(p)
    if rule.name == "max":
        return p.max()
    if rule.name == "min":
        return p.min()
    if rule.name == "trimmed_mean":
        cut = int(x * len(p))
        s = np.sort(p)
        return s[cut:len(p) - cut].mean() if len(p) - 2 * cut > 0 else np.nan
    if rule.name == "topk_mean":
        return np.sort(p)[-int(x):].mean()
    if rule.name == "quantile":
        return np.quantile(p, x)
    if rule.name == "logit_mean":
        q = np.clip(p, 1e-7, 1 - 1e-7)
        return 1 / (1 + np.exp(-np.mean(np.log(q / (1 - q)))))
    if rule.name == "frac_above":
        return np.mean(p > x)
    if rule.name == "confident":
        return confident_strategy(p, x)
    if rule.name == "confidence_weighted":
        w = np.abs(p - 0.5)
        return (w * p).sum() / w.sum() if w.sum() > 0 else p.mean()
    raise AssertionError(rule)


@pytest.mark.parametrize("seed", range(6))
def test_vectorised_rules_equal_the_per_video_reference(seed):
    rng = np.random.default_rng(seed)
    n_videos = 60
    counts = rng.choice([0, 1, 2, 3, 12, 13, 20, 40], size=n_videos)
    groups = np.repeat(np.arange(n_videos), counts)
    kind = rng.integers(0, 3, n_videos)[groups]   # mostly-fake, mostly-real and mixed videos
    scores = np.where(kind == 0, rng.beta(8, 1, len(groups)), np.where(kind == 1, rng.beta(1, 12, len(groups)),
                                                                       rng.uniform(size=len(groups))))
    scores[rng.uniform(size=len(scores)) < 0.05] = 0.5                # exact ties and zero weights
    perm = rng.permutation(len(groups))                               # frame order must not matter
    rules = [Rule.parse(s) for s in RULE_SPECS]
    got = aggregate(groups[perm], scores[perm], n_videos, rules)
    for rule in rules:
        want = np.array([reference(rule, scores[groups == v]) for v in range(n_videos)])
        np.testing.assert_allclose(got[rule.label], want, rtol=1e-12, atol=1e-12, err_msg=rule.label)
        assert np.isnan(got[rule.label][counts == 0]).all()


def test_confident_strategy_branches():
    t = Rule("confident", 0.8)
    many_fake = np.r_[np.full(15, 0.95), np.full(5, 0.3)]
    mostly_real = np.r_[np.full(19, 0.05), [0.9]]
    mixed = np.r_[np.full(10, 0.9), np.full(10, 0.4)]
    groups = np.repeat([0, 1, 2], 20)
    got = aggregate(groups, np.r_[many_fake, mostly_real, mixed], 3, [t])["confident:0.8"]
    np.testing.assert_allclose(got, [0.95, 0.05, mixed.mean()])


def test_every_rule_is_covered_and_bad_specs_are_errors():
    assert {Rule.parse(s).name for s in RULE_SPECS} == set(RULES)
    for bad, words in [("nope", "unknown rule"), ("mean:3", "takes no parameter"), ("quantile:x", "number"),
                       ("trimmed_mean:0.7", r"\[0, 0.5\)"), ("topk_mean:0", r"\[1, 1000000\]"), ("topk_mean:2.5", "whole"),
                       ("quantile:2", r"\[0, 1\]"), ("frac_above:nan", r"\[0, 1\]"), ("confident:1.5", r"\[0, 1\]")]:
        with pytest.raises(DataError, match=words):
            Rule.parse(bad)
