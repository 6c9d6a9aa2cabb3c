"""``python -m ensemble <command>``: aggregation rules and stackers that turn frame scores into video predictions."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.cli import (
    FEATURES,
    INTERIM,
    MODELS,
    PREDICTIONS,
    add_config_flag,
    add_folder_flag,
    add_name_flag,
    add_seed_offset_flag,
    check_name,
    run,
)
from common.config import MAX_SEED, offset_seed, seed
from common.errors import DataError
from common.executor import add_executor_flags, executor_spec
from common.paths import output_file
from evaluate.settings import load_checked_config  # the whole config, checked by every stage's reader


def output_folder(path: str, flag: str) -> Path:
    """``path`` as a Path when a folder can be made there (no file at it or on the way); checked before any work."""
    path = Path(path)
    for part in (path, *path.parents):
        if part.exists() and not part.is_dir():
            where = "is a file" if part == path else f"{part} is a file"
            raise DataError(f"{flag} {path}: {where}, expected a folder")
    return path


def cmd_fit(args: argparse.Namespace) -> int:
    from .fit import run_fit
    from .settings import backbones

    config = offset_seed(load_checked_config(args.config), args.seed_offset)
    name = check_name(args.name)
    spec = executor_spec(args)
    names = None if args.backbone is None else list(backbones(args.backbone, "--backbone"))
    out, report = run_fit(config, Path(args.interim) / name, Path(args.features) / name,
                          Path(args.out) / name, Path(args.models) / name / "ensemble", names, spec)
    chosen = report["chosen"]
    print(f"{'method':<22}{'blend OOF log-loss':>20}  calibrator")
    for method, r in sorted(report["methods"].items(), key=lambda kv: kv[1]["oof_log_loss"]):
        mark = "  <- chosen" if method == chosen["method"] else "  (reference)" if r["reference"] else ""
        print(f"{method:<22}{r['oof_log_loss']:>20.4f}  {r['calibrator']}{mark}")
    print(f"chosen on the blend split's OOF: {chosen['method']}")
    if "nested_oof_log_loss" in chosen:
        print(f"nested OOF log-loss of the whole choice: {chosen['nested_oof_log_loss']:.4f} (the blend-split figure "
              f"to expect; chosen per fold: {', '.join(chosen['chosen_per_fold'])}); column {report['best_method']}")
    print(f"wrote {Path(args.out) / name}/videos.parquet")
    return 0


def cmd_protocols(args: argparse.Namespace) -> int:
    from .protocols import run_protocols
    from .records import FULL

    config = load_checked_config(args.config)
    name = check_name(args.name)
    report = run_protocols(config, Path(args.interim) / name, Path(args.features) / name, Path(args.out) / name,
                           executor_spec(args))
    budget = report["frame_budget"]
    for k in budget["budgets"]:
        seconds = budget["seconds_per_video"][str(k)]
        cost = "" if seconds is None else f", CNN {seconds * 1000:.1f} ms/video"
        print(f"frames {k or 'all'}: chosen {budget['chosen'][str(k)]}{cost}")
    if report["ablation"]:
        for b, method in report["ablation"]["chosen"].items():
            print(f"{'every backbone' if b == FULL else 'without ' + b}: chosen {method}")
    print(f"wrote {Path(args.out) / name}/frame_budget.parquet, {'ablation.parquet, ' if report['ablation'] else ''}"
          "protocols.json")
    return 0


def cmd_blend(args: argparse.Namespace) -> int:
    from data.settings import MAX_FOLDS

    from .blend import run_blend
    from .settings import LOGISTIC_C, MIN_NESTED_FOLDS, load_settings

    config = load_checked_config(args.config)
    settings = load_settings(config)
    folds = settings.folds if args.folds is None else args.folds
    if not MIN_NESTED_FOLDS <= folds <= MAX_FOLDS:
        given = "--folds" if args.folds is not None else f"{config['_source']} [splits] folds ="
        raise DataError(f"{given} {folds}: the nested choice needs {MIN_NESTED_FOLDS} to {MAX_FOLDS} folds")
    if args.c is not None and not LOGISTIC_C[0] <= args.c <= LOGISTIC_C[1]:
        raise DataError(f"--C {args.c:g}: expected a number in [{LOGISTIC_C[0]:g}, {LOGISTIC_C[1]:g}]")
    if args.seed is not None and not 0 <= args.seed <= MAX_SEED:
        raise DataError(f"--seed {args.seed}: expected an integer in [0, {MAX_SEED}]")
    out = output_folder(args.out, "--out")
    fold_seed = seed(config) if args.seed is None else args.seed
    report = run_blend(args.predictions, args.labels, out, args.fill, folds, args.c, fold_seed, settings)
    print(f"{report['videos']} labelled videos, {report['families']} families, {report['folds']} grouped folds "
          f"(seed {report['seed']})")
    print(f"{'method (CV over the folds, not nested)':<52}{'raw':>9}{'calibrated':>12}  calibrator")
    for method, r in sorted(report["methods"].items(), key=lambda kv: kv[1]["log_loss"]):
        mark = "  <- chosen" if method == report["chosen"] else "  (reference)" if r["reference"] else ""
        print(f"{method:<52}{r['log_loss_raw']:>9.4f}{r['log_loss']:>12.4f}  {r['calibrator']}{mark}")
    nested = report["nested"]
    eps = settings.blend.eps
    print(f"nested CV log-loss of the whole choice: {nested['log_loss']:.4f} (the figure to expect of "
          f"submission.csv, clipped like it to [{eps:g}, {1 - eps:g}]; chosen per fold: "
          f"{', '.join(nested['chosen_per_fold'])})")
    print(f"wrote {args.out}/blend.json, oof.csv (nested OOF), submission.csv")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ensemble",
                                     description="Ensemble stage: calibrated per-video predictions.")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    p = sub.add_parser("fit", help="fit aggregation rules and stackers on the blend split and predict every video",
                       description="Video features per backbone, rules, a weighted blend, logistic and LightGBM "
                                   "stackers trained on the blend split with family-grouped OOF predictions, "
                                   "calibration chosen by CV; writes data/predictions/NAME/videos.parquet.")
    add_name_flag(p)
    p.add_argument("--backbone", nargs="+", metavar="NAME", help="backbones to combine (default: [extract] backbones)")
    add_folder_flag(p, "--interim", INTERIM, "prepared tables folder")
    add_folder_flag(p, "--features", FEATURES, "frame features folder")
    add_folder_flag(p, "--out", PREDICTIONS, "predictions folder")
    add_folder_flag(p, "--models", MODELS, "models folder; combiners go to MODELS/NAME/ensemble")
    add_config_flag(p)
    add_executor_flags(p)
    add_seed_offset_flag(p)
    p.set_defaults(func=cmd_fit)
    p = sub.add_parser("protocols", help="refit the ensemble under the frame-budget and backbone-ablation protocols",
                       description="From the feature cache: every combiner refit on the blend split with k frames "
                                   "per video ([ensemble.protocols] frame_budgets) and without each backbone in "
                                   "turn; writes frame_budget.parquet, ablation.parquet and protocols.json beside "
                                   "the predictions table, for 'evaluate report'.")
    add_name_flag(p)
    add_folder_flag(p, "--interim", INTERIM, "prepared tables folder")
    add_folder_flag(p, "--features", FEATURES, "frame features folder")
    add_folder_flag(p, "--out", PREDICTIONS, "predictions folder (reads OUT/NAME/videos.parquet, writes beside it)")
    add_config_flag(p)
    add_executor_flags(p)
    p.set_defaults(func=cmd_protocols)
    p = sub.add_parser("blend", help="blend external Kaggle submission files with family-grouped CV",
                       description="Align Kaggle submission files (filename,label) by video, score blending methods "
                                   "by family-grouped CV log-loss, score that choice by nested CV, and write the best "
                                   "blend as a submission.")
    p.add_argument("--predictions", nargs="+", required=True, metavar="PATH[:COLUMN]",
                   help="prediction files; COLUMN names the prediction column of a non-Kaggle file (default: label)")
    p.add_argument("--labels", required=True, metavar="PATH",
                   help="DFDC metadata.json, or a CSV filename,label[,original] (label 0/1 or REAL/FAKE)")
    p.add_argument("--fill", choices=["prior"], default=None,
                   help="fill videos missing from a file with the labels' FAKE share instead of stopping")
    p.add_argument("--folds", type=int, default=None, help="family-grouped CV folds (default: [splits] folds)")
    p.add_argument("--C", type=float, default=None, dest="c",
                   help="a fixed inverse L2 strength of the logistic and spline stacks (default: chosen from "
                        "[ensemble] logistic_cs by inner CV)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the family-grouped fold assignment (default: the config's seed)")
    p.add_argument("--out", default="reports/blend", help="folder for blend.json, oof.csv, submission.csv "
                                                           "(default: reports/blend)")
    add_config_flag(p)
    p.set_defaults(func=cmd_blend)
    return parser


if __name__ == "__main__":
    sys.exit(run(build_parser()))
