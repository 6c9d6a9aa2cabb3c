"""The faces layout: one folder per video holding ``<frame>.png`` and extra faces ``<frame>_2.png``, ...

``face`` is 1 for ``<frame>.png`` and k for ``<frame>_k.png``.
"""
from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from .metadata import VIDEO_SUFFIXES

# frame numbers fit int32 and face numbers int16 in the tables; longer numbers are not crops
CROP_NAME = re.compile(r"^([0-9]{1,9})(?:_([1-9][0-9]{0,3}))?\.(?:png|jpe?g)$", re.IGNORECASE)
METADATA_GLOBS = ("metadata*.csv", "metadata*.json")


@dataclass(frozen=True)
class Crop:
    frame: int
    face: int
    path: Path


@dataclass
class VideoFolder:
    path: Path
    crops: list[Crop] = field(default_factory=list)
    unreadable: list[Path] = field(default_factory=list)
    unexpected: list[Path] = field(default_factory=list)


def metadata_files(folder: Path) -> list[Path]:
    return sorted(p for pattern in METADATA_GLOBS for p in folder.glob(pattern) if p.is_file())


def face_folders(root: Path) -> dict[str, Path]:
    """Video folders directly under ``root``, keyed by folder name without a video extension."""
    out = {}
    for p in sorted(root.iterdir()):
        if p.is_dir() and not p.name.startswith((".", "__")):
            stem = p.name
            if stem.lower().endswith(VIDEO_SUFFIXES):
                stem = stem.rsplit(".", 1)[0]
            out.setdefault(stem, p)
    return out


def list_crops(folder: Path) -> VideoFolder:
    """Crop files of one video folder, sorted by (frame, face); other files are listed as unexpected."""
    result = VideoFolder(folder)
    for p in sorted(folder.iterdir()):
        m = CROP_NAME.match(p.name)
        if m and p.is_file():
            result.crops.append(Crop(int(m.group(1)), int(m.group(2) or 1), p))
        elif not p.name.startswith("."):
            result.unexpected.append(p)
    result.crops.sort(key=lambda c: (c.frame, c.face))
    kept, seen = [], set()
    for crop in result.crops:         # 0.png and 00.png, or 0.png and 0.jpg, are one (frame, face): keep the first
        if (crop.frame, crop.face) in seen:
            result.unexpected.append(crop.path)
        else:
            seen.add((crop.frame, crop.face))
            kept.append(crop)
    result.crops = kept
    return result


def image_readable(path: Path, mode: str) -> bool:
    """Whether PIL can read ``path``: ``decode`` decodes all pixels, ``header`` only opens it, ``none`` trusts it."""
    if mode == "none":
        return True
    try:
        with Image.open(path) as im:
            if mode == "decode":
                im.load()
            return im.width > 0 and im.height > 0
    except Exception:  # PIL raises many types for corrupt files; any of them means unreadable
        return False


def scan_folders(folders: dict[str, Path], verify: str, workers: int) -> dict[str, VideoFolder]:
    """List and verify the crops of every folder, with a progress bar; unreadable crops are set aside."""
    listed = {stem: list_crops(path) for stem, path in folders.items()}
    crops = [c for vf in listed.values() for c in vf.crops]
    if verify != "none" and crops:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            ok = list(tqdm(pool.map(lambda c: image_readable(c.path, verify), crops, chunksize=64),
                           total=len(crops), desc="verify crops", unit="img", leave=False, disable=None))
        bad = {c.path for c, good in zip(crops, ok) if not good}
        for vf in listed.values():
            vf.unreadable = [c.path for c in vf.crops if c.path in bad]
            vf.crops = [c for c in vf.crops if c.path not in bad]
    return listed
