"""``python -m data <command>``: the dataset stage (synth, prepare, sheet, faces)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from common.cli import (
    INTERIM,
    RAW,
    add_config_flag,
    add_folder_flag,
    add_name_flag,
    check_name,
    run,
)
from common.executor import add_executor_flags, executor_spec
from common.paths import output_file
from evaluate.settings import load_checked_config  # the whole config, checked by every stage's reader

from .settings import load_settings


def cmd_synth(args: argparse.Namespace) -> int:
    from .synth import synthesize

    settings = load_settings(load_checked_config(args.config))
    params = settings.synth.replace(seed=args.seed, videos=args.videos, frames=args.frames, size=args.size)
    workers = args.workers or settings.synth_workers
    start = time.perf_counter()
    plans = synthesize(params, Path(args.out), workers=workers, overwrite=args.overwrite)
    n_frames = sum(len(q.frames) for q in plans if not q.missing)
    print(f"{args.out}: {len(plans)} videos ({sum(q.label for q in plans)} FAKE), {n_frames} frames at "
          f"{params.size}x{params.size}, complete ({time.perf_counter() - start:.1f} s)")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from .prepare import prepare

    config = load_checked_config(args.config)
    prepare(args.data, args.name, config, out_root=Path(args.out), raw_root=Path(args.raw), strict=args.strict)
    return 0


def cmd_sheet(args: argparse.Namespace) -> int:
    from .sheet import NothingToShow, contact_sheet

    out = output_file(args.out or f"reports/{check_name(args.name)}/contact_sheet.png")
    try:
        contact_sheet(Path(args.interim) / args.name, out, families=args.families)
    except NothingToShow as e:
        print(f"no contact sheet: {e}")
        return 0
    print(f"wrote {out}")
    return 0


def cmd_faces(args: argparse.Namespace) -> int:
    from .faces import extract_faces

    executor = executor_spec(args)
    params = load_settings(load_checked_config(args.config)).faces
    start = time.perf_counter()
    results, problems = extract_faces(Path(args.videos), Path(args.out), params,
                                      labels=Path(args.labels) if args.labels else None, executor=executor)
    seconds = time.perf_counter() - start
    problems.warn()
    done = [r for r in results if not r.done_before]
    frames = sum(r.frames for r in done)
    print(f"{len(results)} videos ({len(results) - len(done)} already done): {frames} frames decoded, "
          f"{sum(r.faces for r in done)} faces saved to {args.out} in {seconds:.1f} s ({frames / seconds:.1f} "
          f"frames/s, {executor.label}); wrote {args.out}/metadata.csv")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m data", description="Dataset stage: tables of videos and face crops.")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    p = sub.add_parser("synth", help="generate the embedded DFDC-like face-crop dataset",
                       description="Generate a DFDC-like face-crop dataset in the faces layout, with metadata.csv. "
                                   "Deterministic for given flags; a killed run resumes.")
    p.add_argument("--out", default="data/raw/synthetic", help="output folder (default: data/raw/synthetic)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the config's seed)")
    p.add_argument("--videos", type=int, default=None, help="number of listed videos (default: [synth] videos)")
    p.add_argument("--frames", type=int, default=None, help="most frames per video (default: [synth] frames)")
    p.add_argument("--size", type=int, default=None, help="crop side in pixels (default: [synth] size)")
    p.add_argument("--workers", type=int, default=None, help="parallel processes (default: [synth] workers)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an output folder made by synth with other parameters")
    add_config_flag(p)
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("prepare", help="ingest a faces-layout dataset and write videos/frames tables",
                       description="Ingest face crops (folders, part zips or a DFDC metadata.json next to its face "
                                   "folders), merge and validate the metadata, assign family-grouped splits and "
                                   "write data/interim/NAME/{videos,frames}.parquet and dataset.json.")
    p.add_argument("--data", nargs="+", required=True, metavar="PATH",
                   help="dataset folder(s), deepfake-detection-faces-part-*.zip file(s), or metadata.json/.csv files")
    p.add_argument("--name", default="synthetic", help="dataset name, used in output paths (default: synthetic)")
    add_folder_flag(p, "--out", INTERIM, "tables go to OUT/NAME")
    add_folder_flag(p, "--raw", RAW, "zips are extracted to RAW/NAME/<zip name>")
    p.add_argument("--strict", action="store_true", help="treat every dataset problem as an error")
    add_config_flag(p)
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("sheet", help="write a PNG contact sheet of REAL and FAKE crops",
                       description="A contact sheet: each row a REAL original and its FAKEs, one per method.")
    add_name_flag(p)
    add_folder_flag(p, "--interim", INTERIM, "folder of prepared tables")
    p.add_argument("--out", default=None, help="PNG path (default: reports/NAME/contact_sheet.png)")
    p.add_argument("--families", type=int, default=6, help="rows to show (default: 6)")
    p.set_defaults(func=cmd_sheet)

    p = sub.add_parser("faces", help="detect and crop faces from .mp4 videos into the faces layout",
                       description="Decode videos with PyAV, sample frames as [faces] says, detect faces with MTCNN "
                                   "(bundled weights, offline), save 160x160 crops as <frame>.png / <frame>_2.png "
                                   "and write metadata.csv. A killed run resumes. With --executor dask, each "
                                   "[faces] chunk_videos videos are a task on a Dask cluster.")
    p.add_argument("--videos", required=True, metavar="DIR", help="folder of video files (.mp4, .avi, .mov, ...)")
    p.add_argument("--out", required=True, metavar="DIR", help="output faces folder, e.g. data/raw/NAME")
    p.add_argument("--labels", default=None, metavar="PATH",
                   help="DFDC metadata.json (or metadata CSV) with the videos' labels (default: unlabelled)")
    add_config_flag(p)
    add_executor_flags(p)
    p.set_defaults(func=cmd_faces)
    return parser


if __name__ == "__main__":
    sys.exit(run(build_parser()))
