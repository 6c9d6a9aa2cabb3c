"""``python -m data prepare``: ingest a faces-layout dataset and write the dataset tables.

Outputs, in ``<out>/<name>/`` (written whole or not at all):
- ``videos.parquet``: one row per video: video, label (1 FAKE / 0 REAL / null), original, family, split,
  fold, n_frames, n_faces_max, n_crops, folder, source_split and any extra metadata columns (e.g. method);
- ``frames.parquet``: one row per sampled face crop: video, frame, face, path (relative to the dataset root);
- ``dataset.json``: the dataset root, sources, sampling and split settings, counts and problems found.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from common.atomic import atomic_dir, write_json
from common.cli import check_name
from common.errors import DataError
from common.problems import Problems

from .families import assign_families
from .layout import CROP_NAME, face_folders, metadata_files, scan_folders
from .metadata import Entry, merge_entries, read_metadata, video_name, video_stem
from .sampling import SamplingPolicy
from .settings import SPLITS, DataSettings, load_settings
from .splits import UNLABELED, assign_splits, check_no_family_leak
from .tables import in_column_order
from .zips import extract_zip


@dataclass
class Part:
    """One dataset part: a folder of video face folders and its metadata files (maybe none)."""

    root: Path
    metadata: list[Path]


PART_SEARCH_DEPTH = 3   # how deep below a DATA folder (or zip) metadata files are looked for


def _subfolders(folder: Path) -> list[Path]:
    return [p for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith((".", "__"))]


def _parts_in(folder: Path, depth: int = PART_SEARCH_DEPTH) -> list[Part]:
    """Folders holding metadata files, searched down to ``depth`` levels; each is one part.

    Without any metadata, wrapper folders (a lone sub-folder and no files, as zips often have) are
    skipped and the folder of face folders is one unlabelled part.
    """
    def search(f: Path, level: int) -> list[Part]:
        own = metadata_files(f)
        if own:
            return [Part(f, own)]
        return [p for sub in _subfolders(f) for p in search(sub, level + 1)] if level < depth else []

    parts = search(folder, 0)
    if parts:
        return parts
    while (len(_subfolders(folder)) == 1 and not _has_files(folder)
           and not any(CROP_NAME.match(p.name) for p in _subfolders(folder)[0].iterdir())):
        folder = _subfolders(folder)[0]      # a wrapper folder, not the one video folder of the part
    return [Part(folder, [])]


def _has_files(folder: Path) -> bool:
    return any(p.is_file() and not p.name.startswith(".") for p in folder.iterdir())


def resolve_parts(paths: list[str | Path], raw_dir: Path) -> list[Part]:
    """Parts from DATA: folders, ``*.zip`` files (extracted under ``raw_dir``) or metadata files."""
    parts: list[Part] = []
    zips: dict[str, Path] = {}
    for item in paths:          # every path is checked before anything is extracted
        path = Path(item)
        if not path.exists():
            raise DataError(f"{path}: DATA path not found")
        if path.is_file() and path.suffix.lower() == ".zip":
            if path.stem in zips:
                raise DataError(f"{path}: same file name as {zips[path.stem]}; they would be extracted to the "
                                "same folder, so rename one")
            zips[path.stem] = path
    for item in paths:
        path = Path(item)
        if path.is_dir():
            parts += _parts_in(path)
        elif path.suffix.lower() == ".zip":
            try:
                parts += _parts_in(extract_zip(path, raw_dir / path.stem))
            except DataError:
                with contextlib.suppress(OSError):      # leave no empty extraction folder behind
                    raw_dir.rmdir()
                raise
        elif path.suffix.lower() in (".json", ".csv"):
            parts.append(Part(path.parent, [path]))
        else:
            raise DataError(f"{path}: expected a folder, a .zip file or a metadata .csv/.json file")
    return parts


def _absolute(path: Path) -> Path:
    """Absolute, without resolving symlinks: a symlinked face folder stays inside the dataset."""
    return Path(os.path.abspath(path))


def _dataset_root(parts: list[Part]) -> Path:
    return Path(os.path.commonpath([str(_absolute(p.root)) for p in parts]))


def _face_folders(parts: list[Part], problems: Problems) -> tuple[dict[str, Path], list[tuple[Part, list[str]]]]:
    """Every video folder of every part, keyed by stem (the first one wins), and each part without metadata
    with the stems of the folders it brought."""
    folders: dict[str, Path] = {}
    unlisted: list[tuple[Part, list[str]]] = []
    for part in parts:
        mine: list[str] = []
        for stem, path in face_folders(part.root).items():
            if stem in folders:
                problems.add("video folders found twice (first one used)", str(path))
                continue
            folders[stem] = path
            mine.append(stem)
        if not part.metadata:
            unlisted.append((part, mine))
    return folders, unlisted


def _entries(parts: list[Part], folders: dict[str, Path], unlisted: list[tuple[Part, list[str]]],
             problems: Problems) -> dict[str, Entry]:
    """One entry per video: metadata rows, then the folders of parts without metadata as unlabelled videos."""
    merged = merge_entries([e for part in parts for f in part.metadata for e in read_metadata(f)])
    entries = merged.entries
    if merged.duplicates_dropped:
        problems.add("identical duplicate metadata rows dropped", f"{merged.duplicates_dropped} rows")
    for video, entry in entries.items():
        if entry.label is None:
            problems.add("listed videos without a label (unlabelled)", f"{video} ({entry.source})")
    for part, stems in unlisted:
        new = [stem for stem in sorted(stems) if video_name(stem) not in entries]
        for stem in new:
            entries[video_name(stem)] = Entry(video_name(stem), None, None, None, str(folders[stem]))
        if new:
            problems.add("parts without metadata: all their videos are unlabelled", str(part.root))
        elif not stems:
            problems.add("parts without metadata or video folders (nothing read)", str(part.root))
    if not entries:
        raise DataError(f"{_dataset_root(parts)}: no videos found (no metadata rows and no face folders)")
    return entries


def _present_folders(entries: dict[str, Entry], folders: dict[str, Path], problems: Problems) -> dict[str, Path]:
    """The face folder of each listed video that has one; unlisted folders and folderless videos are problems."""
    by_stem: dict[str, Entry] = {}
    for video, entry in entries.items():
        other = by_stem.setdefault(video_stem(video), entry)
        if other is not entry:
            raise DataError(f"{other.source} and {entry.source}: {other.video} and {entry.video} would share the "
                            f"face folder {video_stem(video)!r}; list each video once")
    listed_stems = set(by_stem)
    for stem in sorted(set(folders) - listed_stems):
        problems.add("folders on disk that are not listed (skipped)", str(folders[stem]))
    present = {video_stem(v): folders[video_stem(v)] for v in entries if video_stem(v) in folders}
    for video in entries:
        if video_stem(video) not in present:
            problems.add("listed videos with no face folder (kept, n_frames = 0)", video)
    return present


def _rows(entries: dict[str, Entry], scanned: dict, family: dict[str, str], policy: SamplingPolicy, root: Path,
          problems: Problems) -> tuple[list[dict], list[tuple]]:
    """One videos-table row per entry and one frames-table row per sampled crop."""
    video_rows, frame_rows = [], []
    for video, entry in entries.items():
        vf = scanned.get(video_stem(video))
        crops = vf.crops if vf else []
        if vf:
            for p in vf.unreadable:
                problems.add("unreadable face crops (skipped)", str(p))
            for p in vf.unexpected:
                problems.add("unexpected files in face folders (ignored)", str(p))
            if not crops:
                problems.add("videos with no readable face crop (kept, n_frames = 0)", video)
        frames = np.unique([c.frame for c in crops]) if crops else np.array([], dtype=int)
        kept = policy.sample(crops)
        frame_rows += [(video, c.frame, c.face, _absolute(c.path).relative_to(root).as_posix()) for c in kept]
        faces_per_frame = pd.Series([c.frame for c in crops]).value_counts()
        video_rows.append({
            "video": video, "label": entry.label, "original": entry.original, "family": family[video],
            "n_frames": len(frames), "n_faces_max": int(faces_per_frame.max()) if crops else 0,
            "n_crops": len(kept), "folder": _absolute(vf.path).relative_to(root).as_posix() if vf else None,
            "source_split": entry.split, **entry.extra,
        })
    return video_rows, frame_rows


def build_tables(parts: list[Part], settings: DataSettings, problems: Problems
                 ) -> tuple[pd.DataFrame, pd.DataFrame, Path]:
    """The videos and frames tables of ``parts`` (see module docstring), and the dataset root."""
    root = _dataset_root(parts)
    folders, unlisted = _face_folders(parts, problems)
    entries = _entries(parts, folders, unlisted, problems)
    present = _present_folders(entries, folders, problems)
    scanned = scan_folders(present, settings.prepare.verify_images, settings.prepare.workers)
    family = assign_families(entries, problems)
    video_rows, frame_rows = _rows(entries, scanned, family, settings.sampling, root, problems)

    videos = pd.DataFrame(video_rows)
    videos["label"] = videos["label"].astype("Int8")
    for col in ("n_frames", "n_faces_max", "n_crops"):
        videos[col] = videos[col].astype("int32")
    videos = assign_splits(videos, settings.splits.fractions, settings.splits.folds, seed=settings.seed)
    videos = in_column_order(videos)
    frames_table = pd.DataFrame(frame_rows, columns=["video", "frame", "face", "path"]).astype(
        {"frame": "int32", "face": "int16"})
    return videos, frames_table, root


def write_tables(out: Path, videos: pd.DataFrame, frames: pd.DataFrame, manifest: dict) -> None:
    """Write the tables whole or not at all, after checking that no family crosses a split or fold."""
    check_no_family_leak(videos)
    with atomic_dir(out) as tmp:
        videos.to_parquet(tmp / "videos.parquet", index=False)
        frames.to_parquet(tmp / "frames.parquet", index=False)
        write_json(tmp / "dataset.json", manifest)


def summarize(name: str, videos: pd.DataFrame, frames: pd.DataFrame, policy: SamplingPolicy) -> list[str]:
    n = len(videos)
    fake = int((videos["label"] == 1).sum())
    real = int((videos["label"] == 0).sum())
    unlabelled = n - fake - real
    share = f"{100 * fake / max(fake + real, 1):.1f}%"
    nf = videos["n_frames"]
    lines = [
        f"dataset {name}: {n} videos ({fake} FAKE = {share} of labelled, {real} REAL, {unlabelled} unlabelled), "
        f"{videos['family'].nunique()} families",
        f"frames per video: min {nf.min()}, median {nf.median():g}, max {nf.max()}; "
        f"{int((nf == 0).sum())} videos with none; {int((videos['n_faces_max'] > 1).sum())} with extra faces",
        f"face crops kept: {len(frames)} (sampling: frames={policy.frames}"
        f"{f' every={policy.every}' if policy.frames == 'every' else ''}"
        f"{f' count={policy.count}' if policy.frames == 'linspace' else ''}, faces={policy.faces})",
    ]
    split_parts = []
    for s in (*SPLITS, UNLABELED):
        sub = videos[videos["split"] == s]
        if len(sub):
            split_parts.append(f"{s} {len(sub)} ({sub['family'].nunique()} families, "
                               f"{100 * (sub['label'] == 1).mean():.0f}% FAKE)" if s != UNLABELED else f"{s} {len(sub)}")
    lines.append("splits: " + ", ".join(split_parts))
    return lines


def prepare(paths: list[str | Path], name: str, config: dict, out_root: Path, raw_root: Path,
            strict: bool = False) -> tuple[pd.DataFrame, pd.DataFrame, Problems]:
    """Ingest ``paths`` and write ``out_root/name``; returns the tables and the problems found."""
    check_name(name)
    settings = load_settings(config)
    problems = Problems(examples=settings.prepare.examples)
    parts = resolve_parts(paths, raw_root / name)
    videos, frames, root = build_tables(parts, settings, problems)
    if strict and problems:
        raise DataError(f"{len(problems.lines())} kinds of problems found (--strict): " + "; ".join(problems.lines()))
    policy = settings.sampling
    manifest = {
        "name": name, "root": str(root),
        "sources": [str(_absolute(Path(p))) for p in paths],
        "parts": [{"root": str(_absolute(p.root)), "metadata": [str(_absolute(m)) for m in p.metadata]}
                  for p in parts],
        "seed": settings.seed, "sampling": policy.__dict__, "splits": dict(config["splits"]),
        "n_videos": len(videos), "n_crops": len(frames),
        "problems": problems.as_dict(),
    }
    write_tables(out_root / name, videos, frames, manifest)
    for line in summarize(name, videos, frames, policy):
        print(line)
    kinds = len(problems.lines())
    print(f"problems: {kinds} kinds, listed as warnings" if kinds else "problems: none")
    problems.warn()
    print(f"wrote {out_root / name}/videos.parquet, frames.parquet, dataset.json")
    return videos, frames, problems
