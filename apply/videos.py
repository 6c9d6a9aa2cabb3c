"""New videos or face folders scored by the models of a dataset, in memory (``python -m evaluate predict``).

Each input is a video file (faces are detected and cropped as ``python -m data faces`` does, into a temporary
folder) or a face folder in the DFDC layout (``<frame>.png`` crops). Crops are verified and sampled as
``prepare`` does, scored by every backbone of the saved ensemble under the input view of its model card, and
combined by the saved ensemble: the same steps, code and models as the pipeline, so a test-split or unlabelled
video gets the probability the pipeline gives it. (Blend-split rows of the predictions table hold out-of-fold
values; this applies the final models, refitted on the whole blend split.)

Each video gets a status: ``ok`` (scored), ``no face`` (read, but no face crop) or ``unreadable`` (the video, or
every crop of it, could not be decoded); the last two get the prior. An empty folder, or a folder of videos
rather than of face crops, is refused.
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

from .models import Models

OK, NO_FACE, UNREADABLE = "ok", "no face", "unreadable"


@dataclass
class VideoInput:
    video: str                 # canonical name, e.g. abcdefghij.mp4
    source: str                # the path given
    is_video: bool             # a video file (else a face folder)
    status: str = OK
    crops: list = field(default_factory=list)


def check_inputs(inputs: list[str]) -> list[VideoInput]:
    """Each input as a video file or a face folder; a one-line error for anything else, an empty folder, a folder
    holding videos, or two inputs of one video name."""
    videos = []
    for given in inputs:
        path = Path(given)
        if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
            is_video = True
        elif path.is_dir():
            entries = sorted(p for p in path.iterdir() if not p.name.startswith("."))
            if not entries:
                raise DataError(f"{path}: an empty folder: neither a video file nor a face folder (<frame>.png "
                                "crops)")
            clips = [p for p in entries if p.suffix.lower() in VIDEO_SUFFIXES]
            if clips:
                raise DataError(f"{path}: a folder of videos ({len(clips)}, e.g. {clips[0].name}), not a face "
                                f"folder; give the videos themselves, e.g. {path}/*{clips[0].suffix}")
            is_video = False
        else:
            raise DataError(f"{path}: not a video file ({', '.join(VIDEO_SUFFIXES)}) or a face folder")
        videos.append(VideoInput(video_name(path.name), given, is_video))
    names = pd.Series([v.video for v in videos])
    if names.duplicated().any():
        raise DataError(f"two inputs are the same video: {names[names.duplicated()].iloc[0]}")
    return videos


def start_tensorflow(config: dict):
    """TensorFlow's runtime (thread pools, devices, precision) set up once, as ``[extract]`` says, before any
    detector or model is built: the pools cannot change once TensorFlow runs (MTCNN would start it). Returns
    the extract settings."""
    from extract.features import worker_runtime
    from extract.settings import load_settings

    settings = load_settings(config)
    worker_runtime(settings)
    return settings


def _collect(videos: list[VideoInput], data: DataSettings, workdir: Path, problems: Problems) -> None:
    """Each input's sampled crops and status: faces detected into ``workdir`` for video files."""
    from data.faces import FaceDetector, extract_video

    params, detector, folders = data.faces, None, {}
    for i, v in enumerate(videos):
        folder = Path(v.source)
        if v.is_video:
            detector = detector or FaceDetector(params)
            folder = workdir / f"{i:05d}"
            result = extract_video(Path(v.source), folder, detector, params)
            if result.error:
                problems.add("unreadable videos (given the prior)", f"{v.source} ({result.error})")
                v.status = UNREADABLE
                folder.mkdir(parents=True, exist_ok=True)
        folders[str(i)] = folder
    # verified and sampled exactly as `prepare` does
    scanned = scan_folders(folders, data.prepare.verify_images, data.prepare.workers)
    for key, v in zip(folders, videos):
        for p in scanned[key].unreadable:
            problems.add("unreadable face crops (skipped)", str(p))
        v.crops = data.sampling.sample(scanned[key].crops)
        if not v.crops and v.status == OK:
            v.status = UNREADABLE if scanned[key].unreadable else NO_FACE
            if v.status == NO_FACE:
                problems.add("videos without a face crop (given the prior)", v.source)


def predict(inputs: list[str], config: dict, models: Models, method: str | None = None
            ) -> tuple[pd.DataFrame, pd.DataFrame, str, Problems]:
    """(one row per input: ``video, source, status, n_crops, p_fake``; one row per crop: ``video, frame, face``
    and each backbone's score; the method used (by default the saved ensemble's best); problems)."""
    videos = check_inputs(inputs)                    # refusals first, before TensorFlow is imported
    method = method or models.saved.best_method
    models.saved.check_methods([method])
    data = load_data_settings(config)
    settings = start_tensorflow(config)
    from extract.features import score_crops

    problems = Problems()
    with tempfile.TemporaryDirectory(prefix="predict-") as tmp:
        _collect(videos, data, Path(tmp), problems)
        rows = pd.DataFrame([(v.video, c.frame, c.face, str(c.path)) for v in videos for c in v.crops],
                            columns=["video", "frame", "face", "path"])
        frames, per_crop = {}, rows[["video", "frame", "face"]].copy()
        for backbone in models.saved.backbones:
            idx, emb, score = score_crops(models.spec(backbone), models.model_file(backbone),
                                          rows["path"].tolist(), settings)
            table = rows.iloc[idx][["video", "frame", "face"]].reset_index(drop=True)
            table["score"] = score
            frames[backbone] = (table, emb)
            per_crop[backbone] = np.nan
            per_crop.loc[per_crop.index[idx], backbone] = score
    scored = set(per_crop.loc[per_crop[models.saved.backbones].notna().any(axis=1), "video"])
    for v in videos:
        if v.status == OK and v.video not in scored:     # every crop failed to decode in the backbones' pipeline
            v.status = UNREADABLE
    names = [v.video for v in videos]
    p = models.saved.predict(names, frames, method)
    out = pd.DataFrame({"video": names, "source": [v.source for v in videos], "status": [v.status for v in videos],
                        "n_crops": [len(v.crops) for v in videos], "p_fake": p})
    return out, per_crop, method, problems
