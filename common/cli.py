"""Command-line plumbing shared by the stage packages (``python -m <stage> <command>``)."""
from __future__ import annotations

import argparse
import re
import sys
from typing import Sequence

from .errors import DataError

# Default folders, relative to the working directory (the repository root under make).
RAW = "data/raw"
INTERIM = "data/interim"
FEATURES = "data/features"
PREDICTIONS = "data/predictions"
MODELS = "models"
REPORTS = "reports"

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_name(name: str) -> str:
    """A dataset name is one plain path component: it names folders that are replaced whole."""
    if not NAME_PATTERN.match(name):
        raise DataError(f"dataset name {name!r} must be letters, digits, '.', '_' or '-', not starting with '.'")
    return name


def add_config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, metavar="TOML",
                        help="config file overlaid on configs/default.toml (default: configs/default.toml)")


def add_seed_offset_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed-offset", type=int, default=0, metavar="K",
                        help="add K to the config's seed for this learned stage only: another seed of the same data "
                             "and splits (make report SEEDS=N runs K = 1 .. N-1)")


def add_name_flag(parser: argparse.ArgumentParser, help: str = "dataset name") -> None:
    parser.add_argument("--name", default="synthetic", help=f"{help} (default: synthetic)")


def add_folder_flag(parser: argparse.ArgumentParser, flag: str, default: str, help: str) -> None:
    """A folder flag whose help ends with its default, e.g. ``--interim`` (default: data/interim)."""
    parser.add_argument(flag, default=default, help=f"{help} (default: {default})")


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and call the sub-command's ``func(args)``; user errors become one line and an exit code.

    An ``OSError`` that names a file (a folder given where a file is expected, a permission problem, a full
    disk) is a user error too: one line naming the path, never a traceback."""
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args) or 0
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:
        if e.filename is None:
            raise
        print(f"error: {os_error_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def os_error_line(e: OSError) -> str:
    """``path: is a folder, expected a file`` and the like, from an OSError that names its file."""
    what = {IsADirectoryError: "is a folder, expected a file", NotADirectoryError: "a part of the path is not a folder",
            FileNotFoundError: "not found", PermissionError: "permission denied"}.get(type(e), e.strerror or str(e))
    return f"{e.filename}: {what}"
