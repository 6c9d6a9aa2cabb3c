"""User-facing errors: one line that names the file and the row or entry."""


class DataError(Exception):
    """Bad input or a missing prerequisite. The CLI prints it as one line and exits non-zero."""

    exit_code = 2
