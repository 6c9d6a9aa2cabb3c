"""``python -m evaluate predict``: the fake probability of new videos or face folders, in one call.

Each input is an ``.mp4`` (faces are detected and cropped as ``python -m data faces`` does, into a temporary
folder) or a face folder in the DFDC layout. Crops are verified and sampled as ``prepare`` does, scored by every
trained backbone of ``models/<NAME>/``, and combined by the ensemble saved in ``models/<NAME>/ensemble/``: the same
steps, code and models as the pipeline, so a test-split or unlabelled video gets the probability the pipeline
gives it. (Blend-split rows of the predictions table hold out-of-fold values; ``predict`` applies the final models,
refitted on the whole blend split.)
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from common.errors import DataError
from common.problems import Problems
from data.layout import scan_folders
from data.metadata import VIDEO_SUFFIXES, video_name
from data.settings import DataSettings
from data.settings import load_settings as load_data_settings


@dataclass
class VideoInput:
    video: str                 # canonical name, e.g. abcdefghij.mp4
    source: str                # the path given
    crops: list = field(default_factory=list)


def _collect(inputs: list[str], data: DataSettings, workdir: Path, problems: Problems) -> list[VideoInput]:
    from data.faces import FaceDetector, extract_video

    params, detector, videos, folders = data.faces, None, [], {}
    for given in inputs:
        path = Path(given)
        if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
            detector = detector or FaceDetector(params)
            folder = workdir / f"{len(videos):05d}"
            result = extract_video(path, folder, detector, params)
            if result.error:
                problems.add("unreadable videos (given the prior)", f"{path} ({result.error})")
                folder.mkdir(parents=True, exist_ok=True)
        elif path.is_dir():
            folder = path
        else:
            raise DataError(f"{path}: not a video file ({', '.join(VIDEO_SUFFIXES)}) or a face folder")
        folders[str(len(videos))] = folder
        videos.append(VideoInput(video_name(path.name), given))
    names = pd.Series([v.video for v in videos])
    if names.duplicated().any():
        raise DataError(f"two inputs are the same video: {names[names.duplicated()].iloc[0]}")
    # verified and sampled exactly as `prepare` does
    scanned = scan_folders(folders, data.prepare.verify_images, data.prepare.workers)
    policy = data.sampling
    for key, v in zip(folders, videos):
        for p in scanned[key].unreadable:
            problems.add("unreadable face crops (skipped)", str(p))
        v.crops = policy.sample(scanned[key].crops)
        if not v.crops:
            problems.add("videos without a face crop (given the prior)", v.source)
    return videos


def predict(inputs: list[str], config: dict, models: Path, method: str | None = None
            ) -> tuple[pd.DataFrame, pd.DataFrame, str, Problems]:
    """(one row per input: ``video, source, n_crops, p_fake``; one row per crop: ``video, frame, face`` and
    each backbone's score; the method used; problems)."""
    from ensemble.saved import SavedEnsemble
    from extract.features import score_crops
    from extract.settings import backbone_spec, load_settings

    saved = SavedEnsemble(models / "ensemble")
    method = method or saved.best_method
    if method not in saved.methods():
        raise DataError(f"{models}/ensemble: no method {method!r} (have: {', '.join(saved.methods())})")
    settings = load_settings(config)
    problems = Problems()
    with tempfile.TemporaryDirectory(prefix="predict-") as tmp:
        videos = _collect(inputs, load_data_settings(config), Path(tmp), problems)
        rows = pd.DataFrame([(v.video, c.frame, c.face, str(c.path)) for v in videos for c in v.crops],
                            columns=["video", "frame", "face", "path"])
        frames, per_crop = {}, rows[["video", "frame", "face"]].copy()
        for backbone in saved.backbones:
            idx, emb, score = score_crops(backbone_spec(config, backbone), models / f"{backbone}.keras",
                                          rows["path"].tolist(), settings)
            table = rows.iloc[idx][["video", "frame", "face"]].reset_index(drop=True)
            table["score"] = score
            frames[backbone] = (table, emb)
            per_crop[backbone] = np.nan
            per_crop.loc[per_crop.index[idx], backbone] = score
    names = [v.video for v in videos]
    p = saved.predict(names, frames, method)
    out = pd.DataFrame({"video": names, "source": [v.source for v in videos],
                        "n_crops": [len(v.crops) for v in videos], "p_fake": p})
    return out, per_crop, method, problems
