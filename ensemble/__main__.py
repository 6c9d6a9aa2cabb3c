"""``python -m ensemble <command>``: aggregation rules and stackers that turn frame scores into video predictions."""
from __future__ import annotations

import argparse
import sys

from data.cli import add_pending_commands, run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ensemble",
                                     description="Ensemble stage: calibrated per-video predictions (issue #4).")
    add_pending_commands(parser, "ensemble", [
        ("fit", "fit aggregation rules and stackers on the blend split and predict every video", 4),
        ("blend", "blend external Kaggle submission files with family-grouped CV", 4)])
    return parser


if __name__ == "__main__":
    sys.exit(run(build_parser()))
