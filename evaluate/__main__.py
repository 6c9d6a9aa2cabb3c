"""``python -m evaluate <command>``: Kaggle log-loss reports, offline scoring and submission files."""
from __future__ import annotations

import argparse
import sys

from data.cli import add_pending_commands, run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m evaluate",
                                     description="Evaluation stage: reports and submissions (issues #5, #6).")
    add_pending_commands(parser, "evaluate", [
        ("report", "write the log-loss leaderboard, metrics and plots", 5),
        ("score", "score Kaggle-format submission files against labels", 5),
        ("validate", "check a submission file against a sample submission", 5),
        ("submission", "write submission.csv with the chosen method", 5),
        ("predict", "print the fake probability of videos or face folders", 6)])
    return parser


if __name__ == "__main__":
    sys.exit(run(build_parser()))
