import numpy as np
import pandas as pd
import pytest

from common.errors import DataError
from data.splits import SPLITS, assign_splits, check_no_family_leak

FRACTIONS = {"train": 0.6, "blend": 0.2, "test": 0.2}


def dfdc_like(n_families: int, seed: int) -> pd.DataFrame:
    """One REAL and 0..9 FAKEs per family, plus a few unlabelled videos."""
    rng = np.random.default_rng(seed)
    rows = []
    for f in range(n_families):
        rows.append((f"r{f}.mp4", 0, f"r{f}.mp4"))
        rows += [(f"f{f}_{k}.mp4", 1, f"r{f}.mp4") for k in range(rng.integers(0, 10))]
    rows += [(f"u{k}.mp4", None, f"u{k}.mp4") for k in range(3)]
    df = pd.DataFrame(rows, columns=["video", "label", "family"])
    df["label"] = df["label"].astype("Int8")
    return df


@pytest.mark.parametrize("seed", range(5))
def test_splits_are_family_grouped_stratified_and_sized(seed):
    videos = dfdc_like(120, seed)
    out = assign_splits(videos, FRACTIONS, folds=5, seed=seed)
    check_no_family_leak(out)
    labelled = out[out["label"].notna()]
    assert labelled.groupby("family")["split"].nunique().max() == 1
    assert labelled.groupby("family")["fold"].nunique().max() == 1
    share = labelled["split"].value_counts(normalize=True)
    fake_rate = labelled.groupby("split")["label"].mean()
    overall = labelled["label"].mean()
    for s in SPLITS:
        assert abs(share[s] - FRACTIONS[s]) < 0.03, share
        assert abs(fake_rate[s] - overall) < 0.03, fake_rate
    assert set(out.loc[out["label"].isna(), "split"]) == {"unlabeled"}
    assert set(out.loc[out["label"].isna(), "fold"]) == {-1}
    for s in SPLITS:
        assert sorted(labelled.loc[labelled["split"] == s, "fold"].unique()) == [0, 1, 2, 3, 4]


def test_splits_are_deterministic_given_the_seed():
    videos = dfdc_like(60, 0)
    a = assign_splits(videos, FRACTIONS, 5, seed=1)
    b = assign_splits(videos, FRACTIONS, 5, seed=1)
    c = assign_splits(videos, FRACTIONS, 5, seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert not a["split"].equals(c["split"])


def test_zero_fraction_split_gets_no_video():
    out = assign_splits(dfdc_like(30, 3), {"train": 0.8, "blend": 0.0, "test": 0.2}, 3, seed=0)
    assert "blend" not in set(out["split"])


def test_leak_check_names_a_family_crossing_a_boundary():
    out = assign_splits(dfdc_like(20, 4), FRACTIONS, 5, seed=0)
    fam = out.loc[out.groupby("family")["video"].transform("size") > 1, "family"].iloc[0]
    leaky = out.copy()
    row = leaky.index[leaky["family"] == fam][0]
    leaky.loc[row, "split"] = next(s for s in SPLITS if s != leaky.loc[row, "split"])
    with pytest.raises(DataError, match=f"family leak.*{fam}"):
        check_no_family_leak(leaky)
    leaky = out.copy()
    leaky.loc[row, "fold"] = (leaky.loc[row, "fold"] + 1) % 5
    with pytest.raises(DataError, match="family leak"):
        check_no_family_leak(leaky)
