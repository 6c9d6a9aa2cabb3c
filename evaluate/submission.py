"""``python -m evaluate submission``: a Kaggle ``submission.csv`` (``filename,label``) from one method's predictions.

The rows are the unlabelled videos (e.g. Kaggle's test set prepared as its own dataset), or the test split when
every video is labelled. The method defaults to the best on the blend split's out-of-fold log-loss (``fit.json``),
never one chosen on test. Videos without a face already hold the blend split's FAKE share (the prior) in the
predictions table. Values are clipped to ``[eps, 1 - eps]``; a NaN, an infinity or a value outside [0, 1] in the
table is refused; with ``--sample`` the file is also
validated against the sample (names, order, header) before it is renamed into place.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from common.atomic import atomic_path
from common.errors import DataError
from common.paths import output_file
from data.metadata import video_name
from data.submissions import listing

from .predictions import load_predictions
from .score import read_sample, validate
from .settings import load_settings


def choose_rows(table: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    unlabelled = table[table["label"].isna()]
    if len(unlabelled):
        return unlabelled, "unlabelled videos"
    return table[table["split"] == "test"], "test split"


def write_submission(config: dict, predictions: Path, out: Path, method: str | None,
                     sample: str | None) -> tuple[str, int, str]:
    """Write ``out``; returns (method, rows, which videos)."""
    out = output_file(out)
    eps = load_settings(config).submission_eps
    table, methods, fit = load_predictions(predictions)
    method = method or (fit.best_method if fit else None)
    if method is None:
        raise DataError(f"{predictions}/fit.json: not found or without best_method; run 'make ensemble', "
                        "or name the method with --method")
    if method not in methods:
        raise DataError(f"{predictions}/videos.parquet: no method column {method!r} "
                        f"(have: {', '.join(methods)})")
    rows, which = choose_rows(table)
    if sample is not None:
        names = read_sample(sample)
        keys = pd.Index(names.map(video_name))
        missing = keys.difference(table["video"])
        if len(missing):
            raise DataError(f"{sample}: {len(missing)} videos of the sample have no prediction in "
                            f"{predictions}/videos.parquet: {listing(missing)}")
        rows = table.set_index("video").loc[keys].reset_index()
        filenames, which = names, f"the rows of {Path(sample).name}"
    else:
        filenames = rows["video"]
    values = rows[method].to_numpy(np.float64)
    if len(values) == 0:
        raise DataError(f"{predictions}/videos.parquet: no unlabelled or test-split videos to submit")
    sub = pd.DataFrame({"filename": np.asarray(filenames), "label": np.clip(values, eps, 1 - eps)})
    with atomic_path(out) as tmp:
        sub.to_csv(tmp, index=False)
        if sample is not None:
            validate(str(tmp), sample)
    return method, len(sub), which
