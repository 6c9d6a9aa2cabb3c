"""evaluate.metrics: metrics against scikit-learn and hand-worked values; the family-grouped bootstrap."""
import math

import numpy as np
import pytest
from sklearn import metrics as skm

from common import metrics as ensemble_metrics
from evaluate import metrics as m

LN2 = math.log(2)


def random_data(seed: int = 0, n: int = 300):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.25, n), 0.01, 0.99)
    return y, p


def families(seed: int = 0, n_families: int = 40):
    """y, p, groups: each family is one REAL video and 1-4 FAKEs made from it."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 6, n_families)
    groups = np.repeat([f"fam{i:02d}" for i in range(n_families)], sizes)
    y = np.concatenate([[0] + [1] * (s - 1) for s in sizes])
    p = np.clip(0.5 + 0.35 * (y - 0.5) + rng.normal(0, 0.2, y.size), 0.02, 0.98)
    return y, p, groups


# --- against scikit-learn on random data ---------------------------------------------------------

def test_rank_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 300)
    p = rng.integers(0, 6, 300) / 5          # few distinct values: many ties across classes
    assert m.roc_auc(y, p) == pytest.approx(skm.roc_auc_score(y, p), rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_probabilistic_metrics_match_sklearn(seed):
    y, p = random_data(seed)
    assert m.log_loss(y, p) == pytest.approx(skm.log_loss(y, p), rel=1e-12)
    assert m.roc_auc(y, p) == pytest.approx(skm.roc_auc_score(y, p), rel=1e-12)
    assert m.average_precision(y, p) == pytest.approx(skm.average_precision_score(y, p), rel=1e-12)
    assert m.brier(y, p) == pytest.approx(skm.brier_score_loss(y, p), rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hard_label_metrics_match_sklearn(seed):
    y, p = random_data(seed)
    pred = (p > 0.5).astype(int)
    assert m.accuracy(y, p) == pytest.approx(skm.accuracy_score(y, pred), rel=1e-12)
    assert m.precision(y, p) == pytest.approx(skm.precision_score(y, pred), rel=1e-12)
    assert m.recall(y, p) == pytest.approx(skm.recall_score(y, pred), rel=1e-12)
    assert m.specificity(y, p) == pytest.approx(skm.recall_score(y, pred, pos_label=0), rel=1e-12)


def test_balanced_log_loss_matches_sklearn_sample_weights():
    y, p = random_data(3, n=301)
    weight = np.where(y == 1, 1 / np.sum(y == 1), 1 / np.sum(y == 0))
    assert m.balanced_log_loss(y, p) == pytest.approx(skm.log_loss(y, p, sample_weight=weight), rel=1e-12)


def test_eer_is_where_fpr_meets_fnr_on_random_data():
    y, p = random_data(4, n=2000)
    fpr, tpr, _ = skm.roc_curve(y, p)
    value = m.eer(y, p)
    # the ROC step where FPR - FNR changes sign brackets the EER
    gap = fpr - (1 - tpr)
    i = int(np.argmax(gap >= 0))
    assert min(fpr[i - 1], 1 - tpr[i]) - 1e-12 <= value <= max(fpr[i], 1 - tpr[i - 1]) + 1e-12
    assert 0.1 < value < 0.4


def test_ece_matches_a_loop_over_bins():
    y, p = random_data(5)
    p[:3] = [0.0, 1.0, 0.5]
    expected = 0.0
    for b in range(10):
        inside = (p >= b / 10) & ((p < (b + 1) / 10) | ((b == 9) & (p == 1.0)))
        if inside.any():
            expected += inside.mean() * abs(y[inside].mean() - p[inside].mean())
    assert m.ece(y, p, bins=10) == pytest.approx(expected, rel=1e-12)


# --- hand-worked examples ------------------------------------------------------------------------

def test_log_loss_is_reused_from_ensemble():
    assert m.log_loss is ensemble_metrics.log_loss
    assert m.KAGGLE_EPS == 1e-15


def test_kaggle_clipping():
    assert m.log_loss([1], [0.0]) == pytest.approx(-math.log(1e-15), rel=1e-9)
    assert m.log_loss([1], [0.0]) == pytest.approx(34.538776, rel=1e-6)
    # 1 - (1 - 1e-15) is 9.992e-16 in float64, so the REAL side is a hair above 34.5388
    assert m.log_loss([0], [1.0]) == pytest.approx(-math.log(1 - (1 - 1e-15)), rel=1e-12)
    assert m.log_loss([0], [1.0]) == pytest.approx(34.538776, rel=1e-4)
    # one FAKE at p=0, one REAL perfectly right: FAKE class loss 34.54, REAL class ~0
    assert m.balanced_log_loss([1, 0], [0.0, 0.0]) == pytest.approx(34.538776 / 2, rel=1e-6)
    assert m.all_metrics([1, 0], [0.0, 0.0], bins=10)["log_loss"] == pytest.approx(34.538776 / 2, rel=1e-6)
    assert m.log_loss([1], [0.0], eps=1e-6) == pytest.approx(-math.log(1e-6), rel=1e-9)


def test_balanced_log_loss_by_hand():
    # FAKEs at 0.5: ln 2 each; the REAL at 0.75: -ln 0.25 = 2 ln 2
    y, p = [1, 1, 1, 0], [0.5, 0.5, 0.5, 0.75]
    assert m.balanced_log_loss(y, p) == pytest.approx((LN2 + 2 * LN2) / 2, rel=1e-12)
    assert m.log_loss(y, p) == pytest.approx((3 * LN2 + 2 * LN2) / 4, rel=1e-12)


def test_ece_by_hand_with_p_one_in_last_bin():
    # bin 1: p .12 .18 (mean .15), y 0 1 (mean .5) -> .35 * 2/4; bin 9: p .9 1.0 (mean .95), y 1 0 -> .45 * 2/4
    y, p = [0, 1, 1, 0], [0.12, 0.18, 0.9, 1.0]
    assert m.ece(y, p, bins=10) == pytest.approx(0.35 / 2 + 0.45 / 2, rel=1e-12)
    # with 2 bins everything is in one bin per half: [.12 .18] and [.9 1.0]
    assert m.ece(y, p, bins=2) == pytest.approx(0.35 / 2 + 0.45 / 2, rel=1e-12)
    # with 1 bin: |mean y - mean p| = |.5 - .55|
    assert m.ece(y, p, bins=1) == pytest.approx(0.05, rel=1e-12)
    assert m.ece([1, 1], [1.0, 1.0], bins=10) == 0.0


def test_brier_by_hand():
    assert m.brier([1, 0, 1, 0], [1.0, 0.5, 0.0, 0.25]) == pytest.approx((0 + 0.25 + 1 + 0.0625) / 4)


@pytest.mark.parametrize("y, p, expected", [
    ([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], 0.0),                     # perfectly separated
    ([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1], 1.0),                     # perfectly wrong
    ([0, 0, 1, 1], [0.5, 0.5, 0.5, 0.5], 0.5),                     # constant scores: diagonal ROC
    ([0, 0, 0, 1, 1, 1], [0.1, 0.2, 0.7, 0.3, 0.8, 0.9], 1 / 3),  # ROC point (1/3, 2/3) exactly
    ([0, 0, 1, 1], [0.5, 0.1, 0.5, 0.9], 0.25),                    # tie: (0, .5) -> (.5, 1), midway
    ([0, 0, 0, 0, 1, 1], [0.1, 0.2, 0.3, 0.8, 0.5, 0.9], 0.25),    # vertical step (.25, .5) -> (.25, 1)
])
def test_eer_known_cases(y, p, expected):
    assert m.eer(y, p) == pytest.approx(expected, abs=1e-12)


def test_threshold_is_strictly_greater_than_half():
    y, p = [1, 0, 1, 0], [0.5, 0.5, 0.51, 0.49]
    # only p = .51 is predicted FAKE
    assert m.accuracy(y, p) == 0.75
    assert m.precision(y, p) == 1.0
    assert m.recall(y, p) == 0.5
    assert m.specificity(y, p) == 1.0
    assert m.recall(y, p, threshold=0.4) == 1.0


def test_undefined_metrics_are_nan():
    one_class = ([1, 1, 1], [0.2, 0.6, 0.9])
    for f in (m.roc_auc, m.average_precision, m.eer, m.balanced_log_loss, m.specificity):
        assert math.isnan(f(*one_class)), f.__name__
    assert math.isnan(m.recall([0, 0], [0.2, 0.9]))
    assert math.isnan(m.precision([1, 0], [0.2, 0.4]))  # nothing predicted FAKE
    assert not math.isnan(m.log_loss(*one_class))


def test_all_metrics_keys_and_values():
    y, p = random_data(6)
    out = m.all_metrics(y, p, bins=10)
    assert list(out) == ["log_loss", "balanced_log_loss", "auc", "ap", "eer", "brier", "ece",
                         "accuracy", "precision", "recall", "specificity"]
    assert all(type(v) is float for v in out.values())
    assert out["auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert out["ece"] == m.ece(y, p, bins=10) and out["eer"] == m.eer(y, p)
    assert m.all_metrics(y, np.zeros_like(p), bins=10, eps=1e-3)["log_loss"] == pytest.approx(
        skm.log_loss(y, np.clip(np.zeros_like(p), 1e-3, 1 - 1e-3)))


def test_length_mismatch_raises():
    with pytest.raises(ValueError):
        m.brier([0, 1, 1], [0.1, 0.2])


# --- family-grouped bootstrap --------------------------------------------------------------------

def test_bootstrap_never_splits_families():
    y, p, groups = families(0)
    size = {g: int(np.sum(groups == g)) for g in np.unique(groups)}
    indices = m.grouped_bootstrap_indices(groups, n_boot=200, seed=1)
    assert len(indices) == 200
    n_families = len(size)
    for idx in indices:
        assert idx.dtype.kind == "i" and idx.min() >= 0 and idx.max() < y.size
        drawn, counts = np.unique(groups[idx], return_counts=True)
        for g, c in zip(drawn, counts):
            # a family drawn k times contributes each of its rows exactly k times
            rows, reps = np.unique(idx[groups[idx] == g], return_counts=True)
            assert set(rows) == set(np.flatnonzero(groups == g))
            assert c == size[g] * reps[0] and np.all(reps == reps[0])
        # n_families draws in total
        assert sum(counts[i] // size[g] for i, g in enumerate(drawn)) == n_families


def test_bootstrap_resamples_with_replacement():
    groups = np.arange(50)
    indices = m.grouped_bootstrap_indices(groups, n_boot=100, seed=0)
    assert all(idx.size == 50 for idx in indices)
    # with replacement: a replicate almost surely repeats some family and misses others
    assert np.mean([np.unique(idx).size < 50 for idx in indices]) > 0.9
    # all families get drawn across replicates, roughly uniformly
    counts = np.bincount(np.concatenate(indices), minlength=50)
    assert counts.min() > 50 and counts.max() < 150


def test_bootstrap_is_deterministic():
    y, p, groups = families(1)
    a = m.grouped_bootstrap_indices(groups, 50, seed=7)
    b = m.grouped_bootstrap_indices(groups, 50, seed=7)
    c = m.grouped_bootstrap_indices(groups, 50, seed=8)
    assert all(np.array_equal(x, z) for x, z in zip(a, b))
    assert not all(np.array_equal(x, z) for x, z in zip(a, c))
    ci = m.bootstrap_ci(y, p, groups, m.log_loss, n_boot=200, seed=3)
    assert ci == m.bootstrap_ci(y, p, groups, m.log_loss, n_boot=200, seed=3)
    assert ci != m.bootstrap_ci(y, p, groups, m.log_loss, n_boot=200, seed=4)
    pb = m.paired_bootstrap(y, p, p ** 2, groups, m.log_loss, n_boot=200, seed=3)
    assert pb == m.paired_bootstrap(y, p, p ** 2, groups, m.log_loss, n_boot=200, seed=3)


def test_bootstrap_ci_contains_point_estimate_and_uses_indices():
    y, p, groups = families(2, n_families=80)
    indices = m.grouped_bootstrap_indices(groups, 500, seed=0)
    for metric in (m.log_loss, m.brier, m.roc_auc, m.accuracy):
        lo, hi = m.bootstrap_ci(y, p, None, metric, indices=indices)
        assert lo < metric(y, p) < hi, metric.__name__
        assert (lo, hi) == m.bootstrap_ci(y, p, groups, metric, n_boot=500, seed=0)
    lo, hi = m.bootstrap_ci(y, p, groups, m.log_loss, n_boot=500, seed=0)
    lo90, hi90 = m.bootstrap_ci(y, p, groups, m.log_loss, n_boot=500, level=0.9, seed=0)
    assert lo < lo90 < hi90 < hi


def test_bootstrap_ci_is_the_percentile_interval_of_replicates():
    y, p, groups = families(3)
    indices = m.grouped_bootstrap_indices(groups, 300, seed=2)
    values = [m.log_loss(y[i], p[i]) for i in indices]
    expected = tuple(np.percentile(values, [2.5, 97.5]))
    assert m.bootstrap_ci(y, p, None, m.log_loss, indices=indices) == pytest.approx(expected, rel=1e-12)


def test_bootstrap_skips_nan_replicates():
    # two families, one all FAKE and one all REAL: a replicate drawing the same family twice
    # has one class and a NaN AUC
    y = np.array([1, 1, 0, 0])
    p = np.array([0.9, 0.6, 0.4, 0.1])
    groups = np.array(["a", "a", "b", "b"])
    indices = m.grouped_bootstrap_indices(groups, 200, seed=0)
    values = m.bootstrap_values(y, p, m.roc_auc, indices)
    assert np.isnan(values).any() and not np.isnan(values).all()
    assert m.bootstrap_ci(y, p, None, m.roc_auc, indices=indices) == (1.0, 1.0)
    all_nan = m.bootstrap_ci([1, 1], [0.5, 0.5], ["a", "b"], m.roc_auc, n_boot=20, seed=0)
    assert all(math.isnan(v) for v in all_nan)


def test_paired_bootstrap_against_itself():
    y, p, groups = families(4)
    out = m.paired_bootstrap(y, p, p.copy(), groups, m.log_loss, n_boot=300, seed=0)
    assert set(out) == {"diff", "ci", "p_value"}
    assert out["diff"] == 0.0 and out["ci"] == [0.0, 0.0] and out["p_value"] == 1.0


def test_paired_bootstrap_detects_a_clearly_better_method():
    y, p, groups = families(5, n_families=80)
    rng = np.random.default_rng(0)
    worse = np.clip(p + rng.normal(0, 0.3, p.size), 0.02, 0.98)
    out = m.paired_bootstrap(y, p, worse, groups, m.log_loss, n_boot=500, seed=0)
    assert out["diff"] == pytest.approx(m.log_loss(y, p) - m.log_loss(y, worse))
    assert out["diff"] < 0
    lo, hi = out["ci"]
    assert lo < out["diff"] < hi < 0
    assert out["p_value"] < 0.01 and type(out["p_value"]) is float
    # the other way round: the difference and its interval flip sign
    back = m.paired_bootstrap(y, worse, p, groups, m.log_loss, n_boot=500, seed=0)
    assert back["diff"] == pytest.approx(-out["diff"])
    assert back["ci"] == pytest.approx([-hi, -lo])
    assert back["p_value"] == out["p_value"]


def test_paired_bootstrap_p_value_definition():
    y, p, groups = families(6)
    rng = np.random.default_rng(1)
    other = np.clip(p + rng.normal(0, 0.1, p.size), 0.02, 0.98)  # a close competitor
    indices = m.grouped_bootstrap_indices(groups, 400, seed=5)
    out = m.paired_bootstrap(y, p, other, None, m.brier, indices=indices)
    d = m.bootstrap_values(y, p, m.brier, indices) - m.bootstrap_values(y, other, m.brier, indices)
    flipped = d >= 0 if out["diff"] < 0 else d <= 0
    assert out["p_value"] == pytest.approx(flipped.mean())
    assert 0 < out["p_value"] < 1


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        m.bootstrap_ci([0, 1], [0.1, 0.9], None, m.log_loss)
    with pytest.raises(ValueError, match="n_boot and seed"):      # no hidden resample count or seed
        m.bootstrap_ci([0, 1], [0.1, 0.9], [0, 1], m.log_loss)
    with pytest.raises(TypeError):                                 # the bins come from [evaluate] ece_bins
        m.all_metrics([0, 1], [0.1, 0.9])
    with pytest.raises(ValueError):
        m.grouped_bootstrap_indices([], 10, 0)
    with pytest.raises(ValueError):
        m.bootstrap_ci([0, 1], [0.1, 0.9], [0, 1], m.log_loss, n_boot=10, level=1.5)


def test_paired_bootstrap_p_value_counts_ties():
    # b differs from a only on family fam00's rows; replicates that miss fam00 have a difference
    # of exactly 0, which counts against a's advantage
    y, p, groups = families(7, n_families=10)
    worse = p.copy()
    worse[groups == "fam00"] = 1 - worse[groups == "fam00"]
    indices = m.grouped_bootstrap_indices(groups, 400, seed=0)
    out = m.paired_bootstrap(y, p, worse, None, m.log_loss, indices=indices)
    d = m.bootstrap_values(y, p, m.log_loss, indices) - m.bootstrap_values(y, worse, m.log_loss, indices)
    assert out["diff"] < 0 and np.all(d <= 0)
    missed = np.array([not np.any(groups[i] == "fam00") for i in indices])
    assert np.all(d[missed] == 0) and 0.2 < missed.mean() < 0.5
    assert out["p_value"] == pytest.approx(missed.mean())


def test_paired_bootstrap_skips_nan_replicates():
    # one FAKE family and one REAL family: replicates drawing one family twice have no AUC
    y = np.array([1, 1, 0, 0])
    p_a = np.array([0.9, 0.6, 0.4, 0.1])  # AUC 1
    p_b = np.array([0.9, 0.3, 0.4, 0.1])  # AUC 0.75
    groups = np.array(["a", "a", "b", "b"])
    out = m.paired_bootstrap(y, p_a, p_b, groups, m.roc_auc, n_boot=200, seed=0)
    assert out["diff"] == pytest.approx(0.25)
    assert out["ci"] == pytest.approx([0.25, 0.25])
    assert out["p_value"] == 0.0
