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


RULES_BENCH = {"frames": 10_000_000, "videos": 100_000, "baseline_videos": 5_000, "lgb_videos": 100_000,
               "lgb_features": 200, "out": "reports/bench/ensemble.json"}      # defaults of the rules bench
MIN_LIMIT_GIB = 0.5           # the smallest --memory-limit-gib: below it nothing starts
SCALE_BENCH = {"videos": 119_154, "executors": "local,dask:2", "dtype": "float16", "dim": 1280, "code": ".",
               "work": "data/bench-scale", "out": "reports/bench/scale.json"}  # defaults of bench --scale: DFDC's
# training set, 1280-d embeddings (EfficientNet-B0's pooled features)


def _given(args: argparse.Namespace, names) -> list[str]:
    """The flags among ``names`` (dests) set on the command line."""
    unset = (None, False)     # argparse's defaults here; `in` would also match 0
    return [f"--{n.replace('_', '-')}" for n in names if not any(getattr(args, n) is u for u in unset)]


def _resolve(args: argparse.Namespace, defaults: dict) -> argparse.Namespace:
    """``args`` with each flag left unset taking the mode's default."""
    return argparse.Namespace(**{**vars(args), **{k: v for k, v in defaults.items() if getattr(args, k) is None}})


def cmd_bench(args: argparse.Namespace) -> int:
    scale_only = [n for n in SCALE_BENCH if n not in RULES_BENCH] + ["backbones", "memory_limit_gib", "keep"]
    if args.scale:
        wrong = _given(args, [n for n in RULES_BENCH if n not in SCALE_BENCH])
        if wrong:
            raise DataError(f"bench --scale: {', '.join(wrong)}: only without --scale (the rules bench)")
        return bench_scale(_resolve(args, SCALE_BENCH))
    wrong = _given(args, scale_only)
    if wrong:
        raise DataError(f"bench: {', '.join(wrong)}: only with --scale")
    from .bench import run_bench

    args = _resolve(args, RULES_BENCH)
    sizes = (args.frames, args.videos, args.baseline_videos, args.lgb_videos, args.lgb_features)
    if min(sizes) < 1 or args.videos > args.frames or args.baseline_videos > args.videos:
        raise DataError("bench: need sizes >= 1, --videos <= --frames and --baseline-videos <= --videos")
    run_bench(output_file(args.out), args.frames, args.videos, args.baseline_videos, args.lgb_videos,
              args.lgb_features, seed(load_checked_config(args.config)))
    return 0


def bench_scale(args: argparse.Namespace) -> int:
    from data.settings import load_settings as data_settings

    from . import scale
    from .settings import load_settings

    if not 1 <= args.videos <= scale.MAX_VIDEOS or not 1 <= args.dim <= scale.MAX_DIM:
        raise DataError(f"bench --scale: need 1 <= --videos <= {scale.MAX_VIDEOS:,} and 1 <= --dim <= "
                        f"{scale.MAX_DIM}")
    if args.dtype not in scale.DTYPES:
        raise DataError(f"bench --scale: --dtype {args.dtype!r}, expected one of {', '.join(scale.DTYPES)}")
    if args.memory_limit_gib is not None and not MIN_LIMIT_GIB <= args.memory_limit_gib < float("inf"):
        raise DataError(f"bench --scale: --memory-limit-gib {args.memory_limit_gib:g}, expected at least "
                        f"{MIN_LIMIT_GIB:g} GiB (a Python process needs more address space)")
    executors = scale.parse_executors(args.executors)
    code = scale.check_code(Path(args.code))
    config = load_checked_config(args.config)
    names = load_settings(config).backbones
    count = len(names) if args.backbones is None else args.backbones
    if not 1 <= count <= len(names):
        raise DataError(f"bench --scale: --backbones {count}: the config names {len(names)} backbones "
                        f"([extract] backbones = {list(names)})")
    data = data_settings(config)
    spec = scale.ScaleSpec(args.videos, names[:count], args.dim, args.dtype, data.seed, data.splits.fractions,
                           data.splits.folds, data.synth.second_face_rate)
    scale.run_scale(spec, executors, code, Path(args.work), output_file(args.out),
                    Path(args.config).resolve() if args.config else None, args.memory_limit_gib, args.keep)
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
    p = sub.add_parser("bench", help="time the vectorised rules against pandas groupby.apply, and LightGBM; "
                                     "with --scale, ensemble fit on a DFDC-sized feature cache",
                       description="All rules over a synthetic frame table against pandas groupby.apply with a "
                                   "Python function per video; peak memory; LightGBM fit time. With --scale: "
                                   "generate a DFDC-shaped feature cache and time 'python -m ensemble fit' on it "
                                   "as a subprocess (wall time, peak RSS of its process tree), per executor.")
    p.add_argument("--frames", type=int, default=None, help="frames in the table (default: 10,000,000)")
    p.add_argument("--videos", type=int, default=None,
                   help="videos in the table (default: 100,000; with --scale: 119,154, DFDC's training set)")
    p.add_argument("--baseline-videos", type=int, default=None,
                   help="videos the pandas baseline runs on (default: 5,000; it is much slower)")
    p.add_argument("--lgb-videos", type=int, default=None, help="rows of the LightGBM fit (default: 100,000)")
    p.add_argument("--lgb-features", type=int, default=None, help="features of the LightGBM fit (default: 200)")
    p.add_argument("--out", default=None, help="JSON output (default: reports/bench/ensemble.json; with --scale: "
                                               "reports/bench/scale.json, runs merged into it)")
    g = p.add_argument_group("--scale: ensemble fit on a generated DFDC-shaped feature cache")
    g.add_argument("--scale", action="store_true", help="run this bench instead of the rules bench")
    g.add_argument("--executors", default=None, metavar="LIST",
                   help="comma-separated executors of the fit, local and dask:N (default: local,dask:2)")
    g.add_argument("--dtype", default=None, metavar="TYPE", help="embedding storage, float16 or float32 "
                                                                 "(default: float16)")
    g.add_argument("--dim", type=int, default=None, help="embedding length (default: 1280)")
    g.add_argument("--backbones", type=int, default=None, metavar="K",
                   help="feature files: the first K of [extract] backbones (default: all of them)")
    g.add_argument("--code", default=None, metavar="PATH",
                   help="checkout whose ensemble fit runs, e.g. a git worktree of another commit (default: .)")
    g.add_argument("--memory-limit-gib", type=float, default=None, metavar="GIB",
                   help="address-space limit (RLIMIT_AS, per process; address space runs well above RSS) of the "
                        "fit: a run past it fails with MemoryError instead of meeting the OOM killer")
    g.add_argument("--work", default=None, metavar="FOLDER",
                   help="where the cache is generated, then deleted (default: data/bench-scale; "
                        "about 25 GB at full size)")
    g.add_argument("--keep", action="store_true", help="keep the generated cache")
    add_config_flag(p)
    p.set_defaults(func=cmd_bench)
    return parser


if __name__ == "__main__":
    sys.exit(run(build_parser()))
