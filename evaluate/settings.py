"""The evaluation stage's config table, checked: ``[evaluate]``."""
from __future__ import annotations

from dataclasses import dataclass

from pathlib import Path

from common.config import load_config, section, seed
from data.settings import load_settings as data_settings
from ensemble.settings import load_settings as ensemble_settings
from extract.settings import load_settings as extract_settings


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


def load_checked_config(path: str | Path | None) -> dict:
    """``load_config(path)`` with every stage's tables checked by that stage's own reader, so that every
    command refuses a bad value with the same line, whichever tables it reads.

    The one place that sees every stage's reader is the last stage (imports run one way); each stage's
    command-line entry (its ``__main__``) calls this, the one later import tests/test_structure.py allows it.
    No reader imports TensorFlow."""
    config = load_config(path)
    for check in (data_settings, extract_settings, ensemble_settings, load_settings):
        check(config)
    return config
