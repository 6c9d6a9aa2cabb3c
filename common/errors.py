"""User-facing errors: one line that names the file and the row or entry."""


class DataError(Exception):
    """Bad input or a missing prerequisite. The CLI prints it as one line and exits non-zero."""

    exit_code = 2


def row_error(path, bad, describe, what, first_row: int = 0) -> DataError:
    """A one-line error for the first flagged row of a table file: ``<path>: row <i> (<describe(i)>): <what(i)>``,
    with how many more rows are flagged. ``bad``: (n,) bool; ``describe``, ``what``: row index -> text;
    ``first_row``: the file row of ``bad[0]`` when the table is a part of its file."""
    import numpy as np

    rows = np.flatnonzero(bad)
    i = int(rows[0])
    more = f" ({len(rows) - 1} more rows like it)" if len(rows) > 1 else ""
    return DataError(f"{path}: row {first_row + i} ({describe(i)}): {what(i)}{more}")


def not_probabilities(values):
    """(n,) bool: the values that are NaN, infinite or outside [0, 1]."""
    import numpy as np

    values = np.asarray(values, np.float64)
    return ~(np.isfinite(values) & (values >= 0) & (values <= 1))
