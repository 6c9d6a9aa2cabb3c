"""``python -m extract <command>``: CNN backbones that turn face crops into embeddings and fake scores."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.cli import (
    FEATURES,
    INTERIM,
    MODELS,
    add_config_flag,
    add_folder_flag,
    add_name_flag,
    add_seed_offset_flag,
    check_name,
    run,
)
from common.config import offset_seed
from common.errors import DataError
from common.executor import add_executor_flags, executor_spec
from evaluate.settings import load_checked_config  # the whole config, checked by every stage's reader


def _settings(args):
    from .settings import load_settings

    config = offset_seed(load_checked_config(args.config), getattr(args, "seed_offset", 0))
    settings = load_settings(config)
    names = [b.name for b in settings.backbones]
    for name in args.backbone or []:
        if name not in names:
            raise DataError(f"--backbone {name}: not in the config's [extract] backbones ({', '.join(names)})")
    specs = [b for b in settings.backbones if not args.backbone or b.name in args.backbone]
    return config, settings, specs


def cmd_train(args: argparse.Namespace) -> int:
    from .train import train_all

    config, settings, specs = _settings(args)
    name = check_name(args.name)
    train_all(Path(args.interim) / name, Path(args.models) / name, settings, config,
              only=[s.name for s in specs])
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    executor = executor_spec(args)            # bad flags and a bad config stop here, before TensorFlow is imported
    _, settings, specs = _settings(args)
    from .features import Shard, extract_backbone

    name = check_name(args.name)
    shard = Shard.parse(args.shard)
    with executor.open() as ex:
        for spec in specs:
            extract_backbone(spec, settings, Path(args.interim) / name, Path(args.models) / name,
                             Path(args.out) / name, shard, ex)
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from .features import merge_chunks

    _, _, specs = _settings(args)
    for spec in specs:
        merge_chunks(spec.name, Path(args.out) / check_name(args.name))
    return 0


def _common(p: argparse.ArgumentParser, out: bool = False) -> None:
    add_name_flag(p)
    p.add_argument("--backbone", nargs="+", metavar="NAME",
                   help="only these of the config's backbones (default: all of [extract] backbones)")
    add_folder_flag(p, "--interim", INTERIM, "prepared tables folder")
    add_folder_flag(p, "--models", MODELS, "models folder; models go to MODELS/NAME")
    if out:
        add_folder_flag(p, "--out", FEATURES, "features folder; files go to OUT/NAME/<backbone>.parquet")
    add_config_flag(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m extract",
                                     description="Feature stage: per-frame embeddings and fake scores.")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    p = sub.add_parser("train", help="train or fine-tune each configured backbone on the train split",
                       description="Train each backbone on the train split's crops; a family-grouped fold of it "
                                   "chooses the epoch. Writes models/NAME/<backbone>.keras and a JSON card. "
                                   "Resumes after a kill.")
    _common(p)
    add_seed_offset_flag(p)
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("features", help="score every face crop with every trained backbone",
                       description="Run every trained backbone over every sampled crop of every split; writes "
                                   "data/features/NAME/<backbone>.parquet. Resumable; shardable across machines; "
                                   "with --executor dask each chunk is a task on a Dask cluster.")
    _common(p, out=True)
    p.add_argument("--shard", metavar="I/N", default=None,
                   help="take only shard I of N (1-based), then run 'merge' once all shards' chunks are together")
    add_executor_flags(p)
    p.set_defaults(func=cmd_features)
    p = sub.add_parser("merge", help="join the chunks of a sharded features run",
                       description="Join data/features/NAME/<backbone>.chunks/ into <backbone>.parquet, once every "
                                   "shard's chunks are there.")
    _common(p, out=True)
    p.set_defaults(func=cmd_merge)
    return parser


if __name__ == "__main__":
    sys.exit(run(build_parser()))
