"""The ensemble stage's config tables, checked: ``[ensemble]``, ``[ensemble.lightgbm]``, ``[ensemble.blend]``,
and the keys it reads of ``[extract]`` (the backbone names) and ``[splits]`` (the fold count of ``ensemble blend``)."""
from __future__ import annotations

from dataclasses import dataclass

from common.cli import NAME_PATTERN
from common.config import MAX_COUNT, Table, section, seed
from common.errors import DataError
from data.settings import MAX_FOLDS

from .rules import Rule

LIGHTGBM_FEATURES = ("scores", "all")
LOGISTIC_C = (1e-6, 1e6)      # bounds of the logistic stacker's inverse L2 strength
BOOST_FROM = ("weighted", "logistic", "none")
MIN_NESTED_FOLDS = 4          # each outer training part keeps 3 folds: LightGBM early-stops on one, holds one out


@dataclass(frozen=True)
class LightGBMSettings:
    features: str                 # "scores" or "all"
    boost_from: str               # "weighted", "logistic" or "none"
    monotone: bool
    params: dict                  # the booster's parameters, n_estimators and early_stopping_rounds


@dataclass(frozen=True)
class CaruanaSettings:
    iterations: int
    bags: int
    bag_fraction: float


@dataclass(frozen=True)
class BlendSettings:
    eps: float                    # submission.csv and oof.csv of `ensemble blend` are clipped to [eps, 1 - eps]
    lightgbm: dict                # its booster's parameters, n_estimators and early_stopping_rounds


@dataclass(frozen=True)
class ProtocolSettings:
    frame_budgets: tuple[int, ...]    # crops' frames kept per video in the frame-budget protocol
    ablation: bool                    # refit the combiners without each backbone in turn


@dataclass(frozen=True)
class EnsembleSettings:
    seed: int
    backbones: tuple[str, ...]    # [extract] backbones: the feature files combined
    rules: tuple[Rule, ...]
    clip_eps: tuple[float, ...]
    logistic_c: float
    logistic_cs: tuple[float, ...]    # C grid of the logistic and spline stacks (one value: fixed)
    tune_folds: int
    spline_knots: int
    spline_degree: int
    nested: bool
    caruana: CaruanaSettings
    pca_components: int
    rows_per_task: int            # feature rows per out-of-core part (whole videos; more where a video needs it)
    lightgbm: LightGBMSettings
    folds: int                    # [splits] folds: the CV folds of `ensemble blend`
    protocols: ProtocolSettings
    blend: BlendSettings


def lightgbm_params(t: Table) -> dict:
    """A booster's parameters, checked; the config's own values are kept (an integer learning rate stays an int),
    as the booster received them before."""
    checked = {
        "num_leaves": t.integer("num_leaves", 2, 131072), "learning_rate": t.number("learning_rate", 0, 1, True),
        "n_estimators": t.integer("n_estimators", 1, MAX_COUNT),
        "min_child_samples": t.integer("min_child_samples", 1, MAX_COUNT),
        "subsample": t.number("subsample", 0, 1, True), "subsample_freq": t.integer("subsample_freq", 0, MAX_COUNT),
        "colsample_bytree": t.number("colsample_bytree", 0, 1, True), "reg_lambda": t.number("reg_lambda", 0),
        "early_stopping_rounds": t.integer("early_stopping_rounds", 1, MAX_COUNT),
    }
    return {k: t.raw(k) for k in checked}


def lightgbm_settings(t: Table) -> LightGBMSettings:
    return LightGBMSettings(t.choice("features", LIGHTGBM_FEATURES), t.choice("boost_from", BOOST_FROM),
                            t.boolean("monotone"), lightgbm_params(t))


def load_settings(config: dict) -> EnsembleSettings:
    t, c, p = section(config, "ensemble"), section(config, "ensemble.caruana"), section(config, "ensemble.protocols")
    rules = _rules(t)
    if "mean" not in [r.label for r in rules]:
        raise DataError(f"{t.source}: rules must include \"mean\" (blend/mean averages each backbone's mean)")
    return EnsembleSettings(
        seed=seed(config), backbones=backbones(section(config, "extract").strings("backbones"),
                                                 f"{section(config, 'extract').source}: backbones"), rules=rules,
        clip_eps=tuple(t.numbers("clip_eps", 0, 0.5, True, True)),
        logistic_c=t.number("logistic_c", *LOGISTIC_C), logistic_cs=tuple(t.numbers("logistic_cs", *LOGISTIC_C)),
        tune_folds=t.integer("tune_folds", 2, MAX_FOLDS), spline_knots=t.integer("spline_knots", 2, 64),
        spline_degree=t.integer("spline_degree", 1, 5), nested=t.boolean("nested"),
        caruana=CaruanaSettings(c.integer("iterations", 1, 100_000), c.integer("bags", 1, 10_000),
                                c.number("bag_fraction", 0, 1, True)),
        pca_components=t.integer("pca_components", 0, 4096),
        rows_per_task=t.integer("rows_per_task", 1, MAX_COUNT),
        lightgbm=lightgbm_settings(section(config, "ensemble.lightgbm")),
        folds=section(config, "splits").integer("folds", 2, MAX_FOLDS),
        protocols=ProtocolSettings(tuple(p.integers("frame_budgets", 1, MAX_COUNT)), p.boolean("ablation")),
        blend=BlendSettings(section(config, "ensemble.blend").number("eps", 0, 0.5, True, True),
                            lightgbm_params(section(config, "ensemble.blend.lightgbm"))))


def backbones(names: list[str], where: str) -> tuple[str, ...]:
    """Backbone names, checked: distinct, each one plain path component (it names a file in the features
    folder). ``where`` names the config key or flag in the error."""
    bad = [n for n in names if not NAME_PATTERN.match(n)]
    if bad:
        raise DataError(f"{where}: backbone {bad[0]!r} must be letters, digits, '.', '_' or '-', not starting "
                        "with '.' (it names a feature file)")
    if len(set(names)) != len(names):
        raise DataError(f"{where}: {names}: a backbone is named twice")
    return tuple(names)


def _rules(t: Table) -> tuple[Rule, ...]:
    rules = tuple(Rule.parse(r, f"{t.source}: rules") for r in t.strings("rules"))
    if len({r.label for r in rules}) != len(rules):
        raise DataError(f"{t.source}: rules = {t.raw('rules')!r}, expected distinct rules")
    return rules
