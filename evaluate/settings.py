"""The evaluation stage's config table, checked: ``[evaluate]``."""
from __future__ import annotations

from dataclasses import dataclass

from common.config import section, seed


@dataclass(frozen=True)
class EvaluateSettings:
    seed: int
    bootstrap: int            # family-grouped bootstrap resamples for the 95 % intervals
    top_methods: int          # methods drawn in the ROC figure
    ece_bins: int
    submission_eps: float     # submitted values are clipped to [eps, 1 - eps]


def load_settings(config: dict) -> EvaluateSettings:
    t = section(config, "evaluate")
    return EvaluateSettings(
        seed=seed(config), bootstrap=t.integer("bootstrap", 1, 100_000), top_methods=t.integer("top_methods", 1, 100),
        ece_bins=t.integer("ece_bins", 1, 1000), submission_eps=t.number("submission_eps", 0, 0.5, open_high=True))
