"""Shared command-line plumbing for the stage packages (``python -m <stage> <command>``)."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .errors import DataError


def add_config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, metavar="TOML",
                        help="config file overlaid on configs/default.toml (default: configs/default.toml)")


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and call the sub-command's ``func(args)``; user errors become one line and an exit code."""
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args) or 0
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
