"""Cross-fitting: out-of-fold (OOF) predictions over family-grouped folds, the one loop every learned step uses
(stackers, blends of external submissions, calibrator choice)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class CrossFit:
    oof: np.ndarray                       # (n,) each row predicted by the model that did not see its fold
    models: list = field(default_factory=list)   # the fitted model of each fold, in fold order

    def median_best_iteration(self) -> int:
        """The median early-stopped round count over the folds (for refitting an early-stopped booster)."""
        return max(1, int(np.median([m.best_iteration_ for m in self.models])))


def predict_fake(model, X) -> np.ndarray:
    """(n,) P(FAKE): column 1 of ``predict_proba`` for a combiner, ``transform`` for a calibrator."""
    if hasattr(model, "predict_proba"):
        return model.predict_proba(X)[:, 1]
    return model.transform(X)


def cross_fit(make: Callable[[], object], X, y: np.ndarray, folds: np.ndarray,
              early_stopping: bool = False, groups: np.ndarray | None = None) -> CrossFit:
    """OOF predictions of ``make()`` models, one per fold id in ``folds`` (n,), each fitted on the other folds.

    ``X``: (n, ...) DataFrame or array, rows aligned with ``y`` (n,). With ``early_stopping`` the next fold id
    (cyclically) is held out of each training part as the model's ``X_val``, ``y_val``, so a booster early-stops on
    videos it neither trains on nor is scored on. ``groups`` (n,): family ids, passed on to ``fit`` for a
    combiner that tunes itself by grouped CV."""
    oof = np.empty(len(y))
    fold_ids = np.unique(folds)
    models = []
    for i, k in enumerate(fold_ids):
        held = folds == k
        if early_stopping:
            inner = folds == fold_ids[(i + 1) % len(fold_ids)]
            train = ~held & ~inner
            extra = {} if groups is None else {"groups": groups[train]}
            model = make().fit(X[train], y[train], **extra, X_val=X[inner], y_val=y[inner])
        else:
            extra = {} if groups is None else {"groups": groups[~held]}
            model = make().fit(X[~held], y[~held], **extra)
        oof[held] = predict_fake(model, X[held])
        models.append(model)
    return CrossFit(oof, models)
