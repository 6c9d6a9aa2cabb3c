"""Choosing a combiner honestly (ensemble.selection) and the combiners it chooses from (ensemble.stackers)."""
import json

import numpy as np
import pandas as pd
import pytest

from common.config import load_config
from common.metrics import log_loss
from data.splits import grouped_assign
from ensemble.blend import methods
from ensemble.selection import Candidate, choose, fit_candidates, nested
from ensemble.settings import load_settings
from ensemble.stackers import (
    KINDS,
    EnsembleSelection,
    LogisticStack,
    RankMean,
    SplineStack,
    WeightedBlend,
)

SETTINGS = load_settings(load_config(None))
EPS = list(SETTINGS.clip_eps)


def noise(seed: int, n: int = 240, k: int = 6):
    """Columns and labels with nothing to learn: every column is uniform noise, labels are coin flips."""
    rng = np.random.default_rng(seed)
    family = np.arange(n) // 2
    y = rng.integers(0, 2, n)
    X = pd.DataFrame(rng.uniform(0.05, 0.95, (n, k)), columns=[f"m{i}" for i in range(k)])
    folds = grouped_assign(family, y, np.full(5, 0.2), np.random.default_rng(seed))
    return X, y, family, folds


def test_the_nested_figure_is_not_optimistic_on_pure_noise():
    X, y, family, folds = noise(0)
    candidates = methods(list(X.columns), SETTINGS, 0)
    fitted = fit_candidates(candidates, X, y, folds, family, EPS)
    prior = fitted["prior"].loss
    # the minimum of many CV figures beats the prior on labels that are coin flips: selection bias
    assert min(f.loss for f in fitted.values()) < prior - 0.01
    oof, chosen = nested(candidates, X, y, folds, family, EPS)
    assert len(chosen) == 5 and not any(candidates[c].reference for c in chosen)
    assert log_loss(y, oof) >= prior - 0.01                # the nested figure of the whole choice does not


def signal(seed: int = 0, n: int = 400):
    """Three noisy, badly calibrated views of a latent FAKE score, in families of 4."""
    rng = np.random.default_rng(seed)
    family = np.arange(n) // 4
    z = rng.normal(size=n) + 1.0
    y = (z + rng.normal(scale=0.8, size=n) > 0.7).astype(int)
    cols = {"sharp": 1 / (1 + np.exp(-4 * (z + rng.normal(scale=0.7, size=n)))),
            "flat": 0.5 + 0.05 * np.tanh(z + rng.normal(scale=1.0, size=n)),
            "junk": rng.uniform(size=n)}
    X = pd.DataFrame(cols)
    folds = grouped_assign(family, y, np.full(5, 0.2), np.random.default_rng(seed))
    return X, y, family, folds


def test_learned_combiners_beat_the_prior_and_save_as_json():
    X, y, family, _ = signal()
    cols = list(X.columns)
    prior = log_loss(y, np.full(len(y), y.mean()))
    models = [LogisticStack(cols, Cs=(0.01, 0.1, 1, 10)), SplineStack(cols, Cs=(0.01, 0.1, 1)),
              EnsembleSelection(cols, iterations=20, bags=5), WeightedBlend(cols), RankMean(cols)]
    for model in models:
        model.fit(X, y, groups=family)
        p = model.predict_proba(X)[:, 1]
        assert p.shape == (len(y),) and np.all((p >= 0) & (p <= 1))
        obj = json.loads(json.dumps(model.to_json()))         # plain JSON, no pickle
        again = KINDS[obj["kind"]].from_json(obj)
        np.testing.assert_allclose(again.predict_proba(X)[:, 1], p, rtol=1e-12)
    assert log_loss(y, models[0].predict_proba(X)[:, 1]) < prior - 0.1
    # C is chosen by the inner grouped CV from the grid; the scores of every C are kept
    assert models[0].C_ in (0.01, 0.1, 1, 10) and set(models[0].cv_scores_) == {0.01, 0.1, 1, 10}
    assert models[0].cv_scores_[models[0].C_] == min(models[0].cv_scores_.values())
    # ensemble selection leans on the informative column, not the noise
    weights = dict(zip(cols, models[2].weights_))
    assert weights["sharp"] > weights["junk"] and sum(weights.values()) == pytest.approx(1)


def test_references_are_scored_but_never_chosen():
    X, y, family, folds = signal()
    candidates = {"sharp": Candidate(lambda: RankMean(["sharp"]), reference=True),
                  "junk": Candidate(lambda: RankMean(["junk"]))}
    fitted = fit_candidates(candidates, X, y, folds, family, EPS)
    assert fitted["sharp"].loss < fitted["junk"].loss
    assert choose(fitted, candidates) == "junk"
    with pytest.raises(ValueError, match="every method is a reference"):
        choose({"sharp": fitted["sharp"]}, {"sharp": candidates["sharp"]})


@pytest.mark.parametrize("obj, words", [
    ({"kind": "alias", "method": "stack/chosen"}, "alias of 'stack/chosen': not another saved method"),
    ({"kind": "alias", "method": "../../etc/passwd"}, "not another saved method"),
    ({"kind": "average", "members": ["stack/missing"], "space": "probability"}, "stack_missing.json"),
    ({"kind": "average", "members": ["stack/chosen"], "space": "probability"}, "not another saved method"),
])
def test_saved_aliases_and_averages_refuse_loops_and_paths(tmp_path, obj, words):
    from common.errors import DataError
    from ensemble.saved import load_stacker

    calibrator = {"kind": "clip", "params": {"eps": 0.01}}
    (tmp_path / "stack_other.json").write_text(json.dumps({"kind": "alias", "method": "stack/chosen",
                                                            "calibrator": calibrator}))
    (tmp_path / "stack_chosen.json").write_text(json.dumps({**obj, "calibrator": calibrator}))
    with pytest.raises(DataError, match="not a saved combiner") as e:
        load_stacker(tmp_path / "stack_chosen")
    assert words in str(e.value)
