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
    check_name,
    run,
)
from common.config import load_config, seed
from common.errors import DataError
from common.executor import add_executor_flags, executor_spec
from common.paths import output_file


def cmd_fit(args: argparse.Namespace) -> int:
    from .fit import run_fit

    config = load_config(args.config)
    name = check_name(args.name)
    spec = executor_spec(args)
    out, report = run_fit(config, Path(args.interim) / name, Path(args.features) / name,
                          Path(args.out) / name, Path(args.models) / name / "ensemble", args.backbone, spec)
    print(f"{'method':<22}{'blend OOF log-loss':>20}  calibrator")
    for method, r in sorted(report["methods"].items(), key=lambda kv: kv[1]["oof_log_loss"]):
        print(f"{method:<22}{r['oof_log_loss']:>20.4f}  {r['calibrator']}")
    print(f"best on the blend split's OOF: {report['best_method']}; wrote {Path(args.out) / name}/videos.parquet")
    return 0


def cmd_blend(args: argparse.Namespace) -> int:
    from data.settings import MAX_FOLDS

    from .blend import run_blend
    from .settings import LOGISTIC_C, load_settings

    settings = load_settings(load_config(args.config))
    folds = settings.folds if args.folds is None else args.folds
    c = settings.logistic_c if args.c is None else args.c
    if not 2 <= folds <= MAX_FOLDS or not LOGISTIC_C[0] <= c <= LOGISTIC_C[1]:
        raise DataError(f"--folds {folds} --C {c}: need 2 to {MAX_FOLDS} folds and C in [{LOGISTIC_C[0]:g}, "
                        f"{LOGISTIC_C[1]:g}]")
    report = run_blend(args.predictions, args.labels, Path(args.out), args.fill, folds, c, settings.seed)
    print(f"{report['videos']} labelled videos, {report['families']} families, {report['folds']} grouped folds")
    print(f"{'method':<52}{'CV log-loss':>12}")
    for method, loss in sorted(report["methods"].items(), key=lambda kv: kv[1]):
        print(f"{method:<52}{loss:>12.4f}{'  <- chosen' if method == report['chosen'] else ''}")
    print(f"wrote {args.out}/blend.json, oof.csv, submission.csv")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_bench

    sizes = (args.frames, args.videos, args.baseline_videos, args.lgb_videos, args.lgb_features)
    if min(sizes) < 1 or args.videos > args.frames or args.baseline_videos > args.videos:
        raise DataError("bench: need sizes >= 1, --videos <= --frames and --baseline-videos <= --videos")
    run_bench(output_file(args.out), args.frames, args.videos, args.baseline_videos, args.lgb_videos,
              args.lgb_features, seed(load_config(args.config)))
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
    p.set_defaults(func=cmd_fit)
    p = sub.add_parser("blend", help="blend external Kaggle submission files with family-grouped CV",
                       description="Align Kaggle submission files (filename,label) by video, score blending methods "
                                   "by family-grouped CV log-loss, and write the best blend as a submission.")
    p.add_argument("--predictions", nargs="+", required=True, metavar="PATH[:COLUMN]",
                   help="prediction files; COLUMN names the prediction column of a non-Kaggle file (default: label)")
    p.add_argument("--labels", required=True, metavar="PATH",
                   help="DFDC metadata.json, or a CSV filename,label[,original] (label 0/1 or REAL/FAKE)")
    p.add_argument("--fill", choices=["prior"], default=None,
                   help="fill videos missing from a file with the labels' FAKE share instead of stopping")
    p.add_argument("--folds", type=int, default=None, help="family-grouped CV folds (default: [splits] folds)")
    p.add_argument("--C", type=float, default=None, dest="c",
                   help="inverse L2 strength of the logistic blend (default: [ensemble] logistic_c)")
    p.add_argument("--out", default="reports/blend", help="folder for blend.json, oof.csv, submission.csv "
                                                           "(default: reports/blend)")
    add_config_flag(p)
    p.set_defaults(func=cmd_blend)
    p = sub.add_parser("bench", help="time the vectorised rules against pandas groupby.apply, and LightGBM",
                       description="All rules over a synthetic frame table against pandas groupby.apply with a "
                                   "Python function per video; peak memory; LightGBM fit time.")
    p.add_argument("--frames", type=int, default=10_000_000, help="frames in the table (default: 10,000,000)")
    p.add_argument("--videos", type=int, default=100_000, help="videos in the table (default: 100,000)")
    p.add_argument("--baseline-videos", type=int, default=5_000,
                   help="videos the pandas baseline runs on (default: 5,000; it is much slower)")
    p.add_argument("--lgb-videos", type=int, default=100_000, help="rows of the LightGBM fit (default: 100,000)")
    p.add_argument("--lgb-features", type=int, default=200, help="features of the LightGBM fit (default: 200)")
    p.add_argument("--out", default="reports/bench/ensemble.json", help="JSON output (default: reports/bench/ensemble.json)")
    add_config_flag(p)
    p.set_defaults(func=cmd_bench)
    return parser


if __name__ == "__main__":
    sys.exit(run(build_parser()))
