"""``python -m bench <command>``: throughput and memory benches of the four stages, apart from the stages.

Each command writes a JSON report under ``reports/bench/`` (``make bench``, ``make bench-dask``, ``make bench-scale``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common.cli import INTERIM, MODELS, add_config_flag, add_folder_flag, add_name_flag, check_name, run
from common.config import seed
from common.errors import DataError
from common.executor import machine_cores
from common.paths import output_file
from evaluate.settings import load_checked_config  # the whole config, checked by every stage's reader

REPORTS = Path("reports/bench")
MIN_LIMIT_GIB = 0.5           # the smallest --memory-limit-gib: below it nothing starts
FACE_FRAMES = 60              # frames per demo clip of the faces benches
FACE_SIZES = [(640, 360), (1920, 1080)]
SMALL_FACE = (32, 1920, 1080, 60)     # frames, width, height and face height of the second-pass clip
DASK_FACE_SIZE = (640, 360)


def _workers(flag: str, n: int) -> int:
    """Processes started on this machine: at most its cores, as ExecutorSpec caps local:N (more only thrash)."""
    cores = machine_cores()
    if not 1 <= n <= cores:
        raise DataError(f"{flag} {n}: need 1 <= N <= {cores} (the cores of this machine)")
    return n


def _out(args: argparse.Namespace, default: str) -> Path:
    return output_file(args.out or REPORTS / default)


def cmd_data(args: argparse.Namespace) -> int:
    from .dataset import run_bench

    out = _out(args, "data.json")
    result = run_bench(load_checked_config(args.config), out, videos=args.videos, workers=_workers("--workers", args.workers))
    print(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


def cmd_faces(args: argparse.Namespace) -> int:
    config = load_checked_config(args.config)
    if args.dask is not None:
        from .dataset import run_faces_dask_bench

        out = _out(args, "faces_dask.json")
        result = run_faces_dask_bench(config, out, videos=args.videos or 8, frames=FACE_FRAMES, size=DASK_FACE_SIZE,
                                      workers=_workers("--dask", args.dask))
    else:
        from .dataset import run_faces_bench

        out = _out(args, "faces.json")
        result = run_faces_bench(config, out, videos=args.videos or 4, frames=FACE_FRAMES, sizes=FACE_SIZES,
                                 small_face=SMALL_FACE)
    print(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    from extract.settings import load_settings

    from .features import run_bench, run_dask_bench

    config = load_checked_config(args.config)
    settings = load_settings(config)
    names = [b.name for b in settings.backbones]
    if args.backbone is not None and args.backbone not in names:
        raise DataError(f"--backbone {args.backbone}: not in the config's [extract] backbones ({', '.join(names)})")
    spec = settings.backbones[names.index(args.backbone) if args.backbone else 0]
    name = check_name(args.name)
    interim, models = Path(args.interim) / name, Path(args.models) / name
    if args.dask is not None:
        run_dask_bench(config, spec, interim, models, _out(args, "extract_dask.json"), _workers("--dask", args.dask))
    else:
        run_bench(config, settings, spec, interim, models, _out(args, "extract.json"), frames=args.frames)
    return 0


def cmd_rules(args: argparse.Namespace) -> int:
    from .rules import run_bench

    sizes = (args.frames, args.videos, args.baseline_videos, args.lgb_videos, args.lgb_features)
    if min(sizes) < 1 or args.videos > args.frames or args.baseline_videos > args.videos:
        raise DataError("bench rules: need sizes >= 1, --videos <= --frames and --baseline-videos <= --videos")
    run_bench(_out(args, "ensemble.json"), args.frames, args.videos, args.baseline_videos, args.lgb_videos,
              args.lgb_features, seed(load_checked_config(args.config)))
    return 0


def cmd_scale(args: argparse.Namespace) -> int:
    from data.settings import load_settings as data_settings
    from ensemble.settings import load_settings

    from . import scale

    if not 1 <= args.videos <= scale.MAX_VIDEOS or not 1 <= args.dim <= scale.MAX_DIM:
        raise DataError(f"bench scale: need 1 <= --videos <= {scale.MAX_VIDEOS:,} and 1 <= --dim <= {scale.MAX_DIM}")
    if args.dtype not in scale.DTYPES:
        raise DataError(f"bench scale: --dtype {args.dtype!r}, expected one of {', '.join(scale.DTYPES)}")
    if args.memory_limit_gib is not None and not MIN_LIMIT_GIB <= args.memory_limit_gib < float("inf"):
        raise DataError(f"bench scale: --memory-limit-gib {args.memory_limit_gib:g}, expected at least "
                        f"{MIN_LIMIT_GIB:g} GiB (a Python process needs more address space)")
    executors = scale.parse_executors(args.executors)
    codes = [scale.check_code(Path(c)) for c in args.code]
    if len(set(codes)) < len(codes):
        raise DataError(f"bench scale: --code {' '.join(args.code)}: a checkout is listed twice")
    config = load_checked_config(args.config)
    names = load_settings(config).backbones
    count = len(names) if args.backbones is None else args.backbones
    if not 1 <= count <= len(names):
        raise DataError(f"bench scale: --backbones {count}: the config names {len(names)} backbones "
                        f"([extract] backbones = {list(names)})")
    data = data_settings(config)
    spec = scale.ScaleSpec(args.videos, names[:count], args.dim, args.dtype, data.seed, data.splits.fractions,
                           data.splits.folds, data.synth.second_face_rate)
    scale.run_scale(spec, executors, codes, Path(args.work), _out(args, "scale.json"),
                    Path(args.config).resolve() if args.config else None, args.memory_limit_gib, args.keep)
    return 0


def _out_flag(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--out", default=None, help=f"JSON output (default: {REPORTS / default})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench",
                                     description="Benches of the stages: throughput, memory, scale.")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    p = sub.add_parser("data", help="synth frames/s with 1 and N workers, prepare crops/s per verify_images mode",
                       description="Benchmark the dataset stage in one run: synth frames/s with 1 and N workers, "
                                   "prepare crops/s for each verify_images mode.")
    _out_flag(p, "data.json")
    p.add_argument("--videos", type=int, default=60, help="synthetic videos to generate (default: 60)")
    p.add_argument("--workers", type=int, default=2, help="parallel synth workers to compare with 1 (default: 2)")
    add_config_flag(p)
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("faces", help="'data faces' decode + detect throughput on generated .mp4 clips",
                       description="'data faces' decoding and detection frames/s and videos/s on demo clips at "
                                   "640x360 and 1080p, and the second pass's recall and time on a 1080p clip of a "
                                   "60-px face; with --dask N, whole 'data faces' runs here and on a local:N Dask "
                                   "cluster.")
    p.add_argument("--out", default=None, help="JSON output (default: reports/bench/faces.json, or faces_dask.json "
                                               "with --dask)")
    p.add_argument("--videos", type=int, default=None,
                   help="demo clips of each size (default: 4; 8 with --dask)")
    p.add_argument("--dask", type=int, default=None, metavar="N",
                   help="instead: time whole 'data faces' runs here and on a local:N Dask cluster")
    add_config_flag(p)
    p.set_defaults(func=cmd_faces)

    p = sub.add_parser("extract", help="frames/s of a backbone: model only, the tf.data pipeline, a naive loader",
                       description="Frames/s of one backbone on the prepared dataset, three ways in one run; "
                                   "with --dask N: 'extract features' here against N Dask workers.")
    add_name_flag(p)
    p.add_argument("--backbone", default=None, metavar="NAME",
                   help="the backbone to time (default: the first of [extract] backbones)")
    add_folder_flag(p, "--interim", INTERIM, "prepared tables folder")
    add_folder_flag(p, "--models", MODELS, "models folder (MODELS/NAME/<backbone>.keras; untrained without it)")
    p.add_argument("--out", default=None, help="JSON output (default: reports/bench/extract.json, or "
                                               "extract_dask.json with --dask)")
    p.add_argument("--frames", type=int, default=2048, help="crops to time per variant (default: 2048)")
    p.add_argument("--dask", type=int, default=None, metavar="N",
                   help="instead: time 'extract features' here, then on a local:N Dask cluster")
    add_config_flag(p)
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("rules", help="the vectorised rules against pandas groupby.apply, and LightGBM fit time",
                       description="All rules over a synthetic frame table against pandas groupby.apply with a "
                                   "Python function per video; peak memory; LightGBM fit time.")
    p.add_argument("--frames", type=int, default=10_000_000, help="frames in the table (default: 10,000,000)")
    p.add_argument("--videos", type=int, default=100_000, help="videos in the table (default: 100,000)")
    p.add_argument("--baseline-videos", type=int, default=5_000,
                   help="videos the pandas baseline runs on (default: 5,000; it is much slower)")
    p.add_argument("--lgb-videos", type=int, default=100_000, help="rows of the LightGBM fit (default: 100,000)")
    p.add_argument("--lgb-features", type=int, default=200, help="features of the LightGBM fit (default: 200)")
    _out_flag(p, "ensemble.json")
    add_config_flag(p)
    p.set_defaults(func=cmd_rules)

    p = sub.add_parser("scale", help="'ensemble fit' on a generated DFDC-shaped feature cache: seconds, peak RSS",
                       description="Generate a DFDC-shaped feature cache and time 'python -m ensemble fit' on it as "
                                   "a subprocess (wall time, peak RSS of its process tree), per executor; runs are "
                                   "merged into the report.")
    p.add_argument("--videos", type=int, default=119_154, help="videos (default: 119,154, DFDC's training set)")
    p.add_argument("--executors", default="local,dask:2", metavar="LIST",
                   help="comma-separated executors of the fit, local and dask:N (default: local,dask:2)")
    p.add_argument("--dtype", default="float16", metavar="TYPE",
                   help="embedding storage, float16 or float32 (default: float16)")
    p.add_argument("--dim", type=int, default=1280,
                   help="embedding length (default: 1280, EfficientNet-B0's pooled features)")
    p.add_argument("--backbones", type=int, default=None, metavar="K",
                   help="feature files: the first K of [extract] backbones (default: all of them)")
    p.add_argument("--code", nargs="+", default=["."], metavar="PATH",
                   help="checkouts whose ensemble fit runs, each on the same generated cache, e.g. a git worktree "
                        "of another commit and . (default: .)")
    p.add_argument("--memory-limit-gib", type=float, default=None, metavar="GIB",
                   help="address-space limit (RLIMIT_AS, per process; address space runs well above RSS) of the "
                        "fit: a run past it fails with MemoryError instead of meeting the OOM killer")
    p.add_argument("--work", default="data/bench-scale", metavar="FOLDER",
                   help="where the cache is generated, then deleted (default: data/bench-scale; about 25 GB at "
                        "full size)")
    p.add_argument("--keep", action="store_true", help="keep the generated cache")
    _out_flag(p, "scale.json")
    add_config_flag(p)
    p.set_defaults(func=cmd_scale)
    return parser


if __name__ == "__main__":
    sys.exit(run(build_parser()))
