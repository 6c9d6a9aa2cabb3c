"""``python -m extract <command>``: CNN backbones that turn face crops into embeddings and fake scores."""
from __future__ import annotations

import argparse
import sys

from data.cli import add_pending_commands, run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m extract",
                                     description="Feature stage: per-frame embeddings and fake scores (issue #3).")
    add_pending_commands(parser, "extract", [
        ("train", "train or fine-tune each configured backbone on the train split", 3),
        ("features", "score every face crop with every trained backbone", 3),
        ("merge", "join the shards of a sharded features run", 3),
        ("bench", "measure frames/s of the feature pipeline", 3)])
    return parser


if __name__ == "__main__":
    sys.exit(run(build_parser()))
