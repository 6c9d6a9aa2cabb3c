"""Shared command-line plumbing for the stage packages (``python -m <stage> <command>``)."""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from .errors import DataError, NotImplementedYet


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


def not_implemented(stage: str, command: str, issue: int) -> Callable[[argparse.Namespace], int]:
    """Handler of a command whose issue has not landed yet: a clear message and exit code 3."""
    def handler(args: argparse.Namespace) -> int:
        raise NotImplementedYet(f"'python -m {stage} {command}' is not implemented yet (issue #{issue})")
    return handler


def add_pending_commands(parser: argparse.ArgumentParser, stage: str,
                         commands: list[tuple[str, str, int]]) -> None:
    """Sub-commands (name, help text, issue number) that only say they are not implemented yet."""
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for command, text, issue in commands:
        p = sub.add_parser(command, help=f"{text} (not implemented yet)", description=f"{text[0].upper()}{text[1:]}.")
        p.add_argument("--name", default="synthetic", help="dataset name (default: synthetic)")
        add_config_flag(p)
        p.set_defaults(func=not_implemented(stage, command, issue))
