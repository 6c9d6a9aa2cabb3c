"""Choosing a combiner, and an honest figure for the choice.

``fit_candidates`` cross-fits every candidate over family-grouped folds, chooses each one's calibrator on its
out-of-fold (OOF) predictions and refits it on all rows; ``choose`` takes the lowest calibrated OOF log-loss.
References (fixed rules, single files) are scored the same way for comparison but never chosen.
Those per-candidate figures are honest for each candidate alone, but their minimum is optimistic: it was picked
on the same rows. ``nested`` runs the whole procedure (every candidate, the choice, the calibration) inside each
fold, on the other folds only, so its OOF predictions score the procedure that is submitted.
"""
from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from common.metrics import log_loss

from .calibration import Calibrator
from .calibration import choose as choose_calibrator
from .crossfit import cross_fit
from .settings import EnsembleSettings
from .stackers import (
    Average,
    EnsembleSelection,
    LogisticStack,
    SplineStack,
    WeightedBlend,
    average,
)


@dataclass(frozen=True)
class Candidate:
    """One way to combine the columns: a factory of unfitted combiners, or an average of other candidates."""

    make: Callable[[], object] | None = None
    early_stopping: bool = False       # a booster early-stopped on the next fold, refit for the median round count
    members: tuple[str, ...] = ()      # an average of these candidates' raw predictions (listed before it)
    space: str = "probability"         # the average's space: "probability" or "logit"
    reference: bool = False            # scored and calibrated for comparison, never chosen (e.g. a single file)


@dataclass
class Fitted:
    """A candidate cross-fitted and refit on all rows."""

    oof: np.ndarray                    # (n,) raw OOF predictions
    model: object                      # the combiner refit on all rows
    calibrator: Calibrator             # chosen by cross-fitting on ``oof``, refit on all of it
    calibrators: dict                  # {calibrator name: CV log-loss}
    oof_calibrated: np.ndarray         # (n,) cross-fitted calibrated OOF predictions
    loss: float                        # log-loss of ``oof_calibrated``

    def predict(self, X) -> np.ndarray:
        """(n,) calibrated P(FAKE) of the refit model."""
        return self.calibrator.transform(self.model.predict_proba(X)[:, 1])


@contextlib.contextmanager
def one_blas_thread():
    """A context running BLAS on one thread. The combiners make many small BLAS calls, which threads slow down
    by up to 40x (measured on 2 busy cores), and one thread's sums do not depend on the machine's core count.
    It also silences the note scikit-learn's Newton solver prints when it hands a nearly separable fit over to
    L-BFGS, which it handles itself."""
    with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*resort to lbfgs.*")
        yield


def fit_candidates(candidates: dict[str, Candidate], X, y: np.ndarray, folds: np.ndarray,
                   groups: np.ndarray | None, clip_eps: list[float], frameless: np.ndarray | None = None,
                   prior: float | None = None) -> dict[str, Fitted]:
    """Every candidate cross-fitted over ``folds`` (n,) and refit on all rows of ``X`` (n, ...), with its
    calibrator. ``frameless`` (n,) bool rows are scored at ``prior`` (videos without a face)."""
    fitted: dict[str, Fitted] = {}
    for name, cand in candidates.items():
        if cand.members:
            missing = [m for m in cand.members if m not in fitted]
            if missing:
                raise ValueError(f"{name}: average of {missing}, which are not candidates listed before it")
            oof = average([fitted[m].oof for m in cand.members], cand.space)
            model = Average([fitted[m].model for m in cand.members], cand.space, list(cand.members)).fit(X, y)
        else:
            cv = cross_fit(cand.make, X, y, folds, cand.early_stopping, groups)
            model = cand.make()
            if cand.early_stopping:
                model.set_params(n_rounds=cv.median_best_iteration())
            model.fit(X, y, **({} if groups is None else {"groups": groups}))
            oof = cv.oof
        if frameless is not None:
            oof = np.where(frameless, prior, oof)
        calibrator, scores, oof_cal = choose_calibrator(oof, y, folds, clip_eps)
        if frameless is not None:
            oof_cal[frameless] = prior
        fitted[name] = Fitted(oof, model, calibrator, scores, oof_cal, log_loss(y, oof_cal))
    return fitted


def choose(fitted: dict[str, Fitted], candidates: dict[str, Candidate]) -> str:
    """The candidate, not a reference, with the lowest calibrated OOF log-loss (ties: the first listed)."""
    eligible = [name for name in fitted if not candidates[name].reference]
    if not eligible:
        raise ValueError("no candidate to choose from: every method is a reference")
    return min(eligible, key=lambda name: round(fitted[name].loss, 12))


def nested(candidates: dict[str, Candidate], X, y: np.ndarray, folds: np.ndarray, groups: np.ndarray | None,
           clip_eps: list[float], frameless: np.ndarray | None = None, prior: float | None = None,
           progress: Callable[[int, str], None] | None = None) -> tuple[np.ndarray, list[str]]:
    """Nested OOF predictions (n,) of the whole procedure (fit every candidate on the other folds, choose,
    calibrate), and the candidate chosen for each fold, in fold order. The other folds are the inner folds:
    ``folds`` holds at least ``settings.MIN_NESTED_FOLDS`` fold ids (checked where the folds are made)."""
    fold_ids = np.unique(folds)
    choosable = {name: c for name, c in candidates.items() if not c.reference}
    out, chosen = np.empty(len(y)), []
    for k in fold_ids:
        held = folds == k
        train = ~held
        fitted = fit_candidates(choosable, X[train], y[train], folds[train],
                                None if groups is None else groups[train], clip_eps,
                                None if frameless is None else frameless[train], prior)
        best = choose(fitted, choosable)
        out[held] = fitted[best].predict(X[held])
        if frameless is not None:
            out[held & frameless] = prior
        chosen.append(best)
        if progress is not None:
            progress(int(k), best)
    return out, chosen


def linear_candidates(columns: list[str], settings: EnsembleSettings, seed: int, c: float | None = None,
                      prefix: tuple[str, str] = ("", "")) -> dict[str, Candidate]:
    """The convex blend, Caruana selection and the tuned logistic and spline stacks of ``columns``, named
    ``<blend prefix>weighted``, ``<blend prefix>caruana``, ``<stack prefix>logistic`` and ``<stack prefix>spline``.
    ``c``: a fixed C instead of the config's grid."""
    grid = (c,) if c is not None else settings.logistic_cs
    linear = {"C": grid[0], "Cs": grid if len(grid) > 1 else None, "cv_folds": settings.tune_folds, "seed": seed}
    car = settings.caruana
    blend, stack = prefix
    return {
        f"{blend}weighted": Candidate(lambda: WeightedBlend(columns)),
        f"{blend}caruana": Candidate(lambda: EnsembleSelection(columns, car.iterations, car.bags, car.bag_fraction,
                                                               seed)),
        f"{stack}logistic": Candidate(lambda: LogisticStack(columns, **linear)),
        f"{stack}spline": Candidate(lambda: SplineStack(columns, **linear, n_knots=settings.spline_knots,
                                                        degree=settings.spline_degree)),
    }
