"""``python -m data sheet``: a PNG contact sheet of REAL originals beside their FAKEs, from the dataset tables."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from PIL import Image, ImageDraw

from common.atomic import atomic_path
from common.errors import DataError

from .tables import load_tables


class NothingToShow(DataError):
    """The dataset has no REAL video with crops, so there is no row to draw."""


def contact_sheet(interim: Path, out: Path, families: int = 6, tile: int = 128) -> Path:
    """One row per family: the REAL original, then one FAKE per manipulation method (or per video)."""
    videos, frames, root = load_tables(interim)
    has_method = "method" in videos.columns
    if "n_crops" not in videos or not pd.api.types.is_integer_dtype(videos["n_crops"]):
        raise DataError(f"{interim}/videos.parquet: no integer n_crops column; rerun 'make data'")
    with_crops = videos[videos["n_crops"] > 0]
    real = with_crops[with_crops["label"] == 0]
    rows = []
    for family in real["family"].drop_duplicates().head(families):
        group = with_crops[with_crops["family"] == family].sort_values(["label", "video"])
        fakes = group[group["label"] == 1]
        if has_method:
            fakes = fakes.drop_duplicates("method")
        rows.append(pd.concat([group[group["label"] == 0].head(1), fakes.head(5)]))
    if not rows:
        raise NothingToShow(f"{interim}: no REAL video with face crops to show (unlabelled data?)")
    width = max(len(r) for r in rows)
    sheet = Image.new("RGB", (width * tile, len(rows) * (tile + 14)), "white")
    draw = ImageDraw.Draw(sheet)
    first = frames[frames["face"] == 1].groupby("video")["path"].apply(list)
    for r, row in enumerate(rows):
        for c, video in enumerate(row.itertuples()):
            paths = first.get(video.video, [])
            if not paths:
                continue
            crop_path = root / paths[len(paths) // 2]
            try:
                crop = Image.open(crop_path).convert("RGB").resize((tile, tile))
            except (OSError, ValueError) as e:        # PIL's UnidentifiedImageError is an OSError
                raise DataError(f"{crop_path}: unreadable face crop ({e}); rerun 'make data'") from None
            y = r * (tile + 14)
            sheet.paste(crop, (c * tile, y + 14))
            text = "REAL" if video.label == 0 else (str(video.method) if has_method else "FAKE")
            draw.text((c * tile + 3, y + 1), text, fill=(0, 0, 0))
    with atomic_path(out) as tmp:
        sheet.save(tmp, format="PNG")
    return out

