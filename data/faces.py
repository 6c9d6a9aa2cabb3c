"""``python -m data faces``: face crops from raw videos, written in the public DFDC face-crop layout.

Frames are decoded with PyAV and sampled as ``[faces]`` says (every k-th, or N evenly spaced); faces are found
by MTCNN (the ``mtcnn`` package, TensorFlow, weights bundled in the package: it runs offline) on frames
downscaled to ``detect_max_side``, in batches; frames where none is found get a second pass (``second_pass``: the
whole frame, or overlapping tiles of it, at the larger ``second_detect_max_side``), which finds the small faces of
people a few metres away. Each face is cropped square with a margin from the full-resolution frame and resized to
``size``. Output: ``<out>/<video stem>/<frame>.png`` (the largest face) and
``<frame>_2.png``, ``_3`` … for the others, plus ``<out>/metadata.csv`` (``filename,split,original,label``).

Each video's folder is written under a temporary name and renamed when complete, so a killed run resumes where it
stopped. An unreadable video gets a warning and no folder; it is still listed, and ``prepare`` keeps it with no
face (the prior).

With ``--executor dask`` a task (:func:`faces_task`) takes ``[faces] chunk_videos`` whole videos; each worker
process builds one detector. ``metadata.csv`` is written here, at the end, either way.
"""
from __future__ import annotations

import contextlib
import pickle
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from common.atomic import atomic_dir, atomic_path
from common.errors import DataError
from common.executor import ExecutorSpec
from common.problems import Problems

from .metadata import (
    VIDEO_SUFFIXES,
    merge_entries,
    read_metadata_csv,
    read_metadata_json,
    video_name,
    video_stem,
)
from .settings import FaceParams

# --- decoding -------------------------------------------------------------------------------------------

def read_frames(path: Path, params: FaceParams) -> list[tuple[int, np.ndarray]]:
    """(frame index, RGB uint8 (H, W, 3)) of the sampled frames. Raises ``av.FFmpegError`` or ``OSError``."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        total = stream.frames or sum(1 for packet in container.demux(stream) if packet.size)
    keep = set(params.sampling.select_frames(np.arange(total)).tolist())
    out = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for i, frame in enumerate(container.decode(stream)):
            if i in keep:
                out.append((i, frame.to_ndarray(format="rgb24")))
    return out


# --- detection ------------------------------------------------------------------------------------------

_NUMPY_ONLY = {("joblib.numpy_pickle", "NumpyArrayWrapper"), ("numpy", "ndarray"), ("numpy", "dtype")}


def load_weight_arrays(path: Path) -> list[np.ndarray]:
    """A joblib weights file (a pickle format, as MTCNN ships its weights) read by an unpickler that refuses
    anything but numpy arrays, so loading it cannot run code."""
    from joblib import numpy_pickle, numpy_pickle_utils

    class ArraysOnly(numpy_pickle.NumpyUnpickler):
        def find_class(self, module, cls):
            if (module, cls) not in _NUMPY_ONLY:
                raise DataError(f"{path}: refusing {module}.{cls} in a weights file (only numpy arrays load)")
            return super().find_class(module, cls)

    with open(path, "rb") as f, numpy_pickle_utils._validate_fileobject_and_memmap(f, str(path), None) as (fobj, _):
        try:
            arrays = ArraysOnly(str(path), fobj, True).load()
        except pickle.UnpicklingError as e:
            raise DataError(f"{path}: not a weights file ({e})") from None
    if not (isinstance(arrays, list) and all(isinstance(a, np.ndarray) for a in arrays)):
        raise DataError(f"{path}: not a list of weight arrays")
    return arrays


def _bundled_weights(name: str) -> list[np.ndarray]:
    return load_weight_arrays(Path(str(resources.files("mtcnn.assets.weights") / name)))


class FaceDetector:
    """MTCNN over batches of same-sized RGB frames; boxes come back in full-resolution pixels."""

    def __init__(self, params: FaceParams):
        from common.tensorflow_setup import (  # first: TensorFlow without its banner
            quiet_native_stderr,
            tf,
        )
        # isort: split
        from mtcnn import MTCNN
        from mtcnn.stages import stage_onet, stage_pnet, stage_rnet

        self.params = params
        with quiet_native_stderr():
            device = "GPU:0" if tf.config.list_physical_devices("GPU") else "CPU:0"
        # the stages load their weights through this module-level name: point it at the numpy-only reader
        with contextlib.ExitStack() as stack:
            for module in (stage_pnet, stage_rnet, stage_onet):
                stack.enter_context(_replaced(module, "load_weights", _bundled_weights))
            # float32 even where setup() chose mixed precision for the backbones (on a GPU)
            stack.enter_context(_float32_policy())
            self.mtcnn = MTCNN(device=device)

    def detect(self, frames: list[np.ndarray]) -> list[list[tuple[np.ndarray, float]]]:
        """For each frame, [(box x, y, w, h in frame pixels, confidence)], largest box first. Frames where the first
        pass (at ``detect_max_side``) keeps no face get the second pass ``[faces] second_pass`` names, in batches."""
        p = self.params
        scale = self._scale(frames[0], p.detect_max_side)
        found = [self._keep(faces) for faces in self._boxes([_resized(f, scale) for f in frames], scale)]
        todo = [i for i, faces in enumerate(found) if not faces]
        # a second pass only helps where it sees the frame larger than the first did
        if todo and p.second_pass != "off" and self._scale(frames[0], p.second_detect_max_side) > scale:
            second = self._tiles if p.second_pass == "tiles" else self._upscale
            for i, faces in zip(todo, second([frames[i] for i in todo])):
                found[i] = faces
        return found

    @staticmethod
    def _scale(frame: np.ndarray, side: int) -> float:
        return min(1.0, side / max(frame.shape[:2]))

    def _mtcnn(self, images: list[np.ndarray]) -> list[list[tuple[np.ndarray, float]]]:
        """MTCNN on same-sized images, ``batch_size`` per call: [(box in image pixels, confidence)] per image."""
        out = []
        for start in range(0, len(images), self.params.batch_size):
            batch = images[start:start + self.params.batch_size]
            # mtcnn 1.0.0 returns no face at all when given a min_face_size other than its default 20,
            # so small faces are dropped in _keep instead
            found = self.mtcnn.detect_faces(batch if len(batch) > 1 else batch[0])
            found = found if len(batch) > 1 else [found]
            out += [[(np.asarray(f["box"], np.float64), float(f["confidence"])) for f in faces] for faces in found]
        return out

    def _boxes(self, images: list[np.ndarray], scale: float) -> list[list[tuple[np.ndarray, float]]]:
        return [[(b / scale, c) for b, c in faces] for faces in self._mtcnn(images)]

    def _keep(self, faces: list[tuple[np.ndarray, float]], merge: bool = False) -> list[tuple[np.ndarray, float]]:
        """The faces ``[faces]`` keeps: confident and large enough, at most ``max_faces``, largest first; with
        ``merge``, boxes of one face seen by overlapping tiles become one."""
        p = self.params
        kept = [(b, c) for b, c in faces if c >= p.min_confidence and max(b[2], b[3]) >= p.min_face_size]
        kept.sort(key=lambda bc: -bc[0][2] * bc[0][3])
        return (_merge(kept, p.merge_overlap) if merge else kept)[: p.max_faces]

    def _upscale(self, frames: list[np.ndarray]) -> list[list[tuple[np.ndarray, float]]]:
        """Second pass: the whole frames at ``second_detect_max_side``, resized one batch at a time."""
        scale, size = self._scale(frames[0], self.params.second_detect_max_side), self.params.batch_size
        return [self._keep(faces) for start in range(0, len(frames), size)
                for faces in self._boxes([_resized(f, scale) for f in frames[start:start + size]], scale)]

    def _tiles(self, frames: list[np.ndarray]) -> list[list[tuple[np.ndarray, float]]]:
        """Second pass: overlapping square tiles of the frames at ``second_detect_max_side``, the tiles of as many
        whole frames as fit in ``batch_size`` (at least one) per MTCNN call; boxes mapped back to frame pixels and
        the duplicates of tile overlaps merged."""
        p = self.params
        scale = self._scale(frames[0], p.second_detect_max_side)
        h, w = _resized(frames[0], scale).shape[:2]
        corners = [(x, y) for y in _tile_starts(h, p.tile_size, p.tile_overlap)
                   for x in _tile_starts(w, p.tile_size, p.tile_overlap)]
        side_x, side_y = min(w, p.tile_size), min(h, p.tile_size)
        per_call = max(1, p.batch_size // len(corners))         # whole frames' tiles per call
        found: list[list[tuple[np.ndarray, float]]] = []
        for start in range(0, len(frames), per_call):
            tiles = [small[y:y + side_y, x:x + side_x]
                     for small in (_resized(f, scale) for f in frames[start:start + per_call]) for x, y in corners]
            boxes = self._mtcnn(tiles)
            for k in range(0, len(boxes), len(corners)):
                faces = [(np.array([b[0] + x, b[1] + y, b[2], b[3]]) / scale, c)
                         for (x, y), tile in zip(corners, boxes[k:k + len(corners)]) for b, c in tile]
                found.append(self._keep(faces, merge=True))
        return found


def _resized(frame: np.ndarray, scale: float) -> np.ndarray:
    if scale >= 1:
        return frame
    h, w = frame.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.BILINEAR))


def _tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Starts of tiles of ``tile`` pixels covering ``length``, neighbours sharing at least ``overlap`` pixels."""
    if length <= tile:
        return [0]
    n = -(-(length - overlap) // (tile - overlap))              # ceiling division
    return np.round(np.linspace(0, length - tile, n)).astype(int).tolist()


def _merge(faces: list[tuple[np.ndarray, float]], overlap: float) -> list[tuple[np.ndarray, float]]:
    """``faces`` largest first, less each box that shares more than ``overlap`` of its area with a larger kept box
    (the same face seen by two tiles, or cut by a tile's edge)."""
    kept: list[tuple[np.ndarray, float]] = []
    for b, c in faces:
        if all(_intersection(b, k) <= overlap * b[2] * b[3] for k, _ in kept):
            kept.append((b, c))
    return kept


def _intersection(a: np.ndarray, b: np.ndarray) -> float:
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(0.0, w) * max(0.0, h)


@contextlib.contextmanager
def _float32_policy():
    """Layers built in the block compute in float32, whatever Keras' global precision policy is."""
    from common.tensorflow_setup import keras

    old = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(old)


# This process's one detector (a Dask worker builds it for its first video, then keeps it): {params: detector}.
_DETECTOR: dict[FaceParams, FaceDetector] = {}


def process_detector(params: FaceParams) -> FaceDetector:
    """This process's FaceDetector, built once; TensorFlow is set up first (GPU memory growth, op determinism)
    as ``extract`` sets it up, so a worker that runs both stages has one runtime."""
    if params not in _DETECTOR:
        from common.tensorflow_setup import setup

        setup(deterministic=True)
        _DETECTOR.clear()
        _DETECTOR[params] = FaceDetector(params)
    return _DETECTOR[params]


@contextlib.contextmanager
def _replaced(module, name: str, value):
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)


def crop_face(frame: np.ndarray, box: np.ndarray, margin: float, size: int) -> Image.Image:
    """A square crop centred on ``box`` (x, y, w, h), side (1 + margin) × the longer box side, zero-padded
    beyond the frame, resized to ``size`` × ``size``."""
    x, y, w, h = box
    side = max(w, h) * (1 + margin)
    cx, cy = x + w / 2, y + h / 2
    left, top = round(cx - side / 2), round(cy - side / 2)
    crop = Image.fromarray(frame).crop((left, top, left + round(side), top + round(side)))
    return crop.resize((size, size), Image.Resampling.BILINEAR)


# --- the command ----------------------------------------------------------------------------------------

@dataclass
class VideoResult:
    video: str
    frames: int = 0               # frames decoded in this run
    faces: int = 0                # crops in the video's folder
    error: str | None = None
    done_before: bool = False     # the folder was complete from an earlier run
    seconds: float = 0.0          # decoding, detection and cropping


def extract_video(path: Path, folder: Path, detector: FaceDetector, params: FaceParams) -> VideoResult:
    """Crops of one video into ``folder`` (written whole or not at all)."""
    import av

    result = VideoResult(video_name(path.name))
    try:
        frames = read_frames(path, params)
    except (av.FFmpegError, OSError, IndexError) as e:      # IndexError: a container without a video stream
        result.error = f"{type(e).__name__}: {e}".splitlines()[0]
        return result
    if not frames:
        result.error = "no decodable frame"
        return result
    boxes = detector.detect([f for _, f in frames])
    with atomic_dir(folder) as tmp:
        for (index, frame), faces in zip(frames, boxes):
            for k, (box, _) in enumerate(faces, 1):
                name = f"{index}.png" if k == 1 else f"{index}_{k}.png"
                crop_face(frame, box, params.margin, params.size).save(tmp / name)
                result.faces += 1
    result.frames = len(frames)
    return result


def list_videos(videos: Path) -> list[Path]:
    if not videos.is_dir():
        raise DataError(f"{videos}: not a folder of videos")
    found = sorted(p for p in videos.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    if not found:
        raise DataError(f"{videos}: no video files ({', '.join(VIDEO_SUFFIXES)})")
    stems = pd.Series([video_stem(video_name(p.name)) for p in found])
    hidden = stems.str.startswith(".") | (stems == "")
    if hidden.any():      # '..mp4' would name the output folder itself, '.x.mp4' a hidden folder prepare skips
        raise DataError(f"{found[int(hidden.to_numpy().nonzero()[0][0])]}: a video name must not start with '.'")
    if stems.duplicated().any():
        raise DataError(f"{videos}: two videos share the name {stems[stems.duplicated()].iloc[0]!r}")
    return found


def labels_table(paths: list[Path], labels: Path | None, problems: Problems) -> pd.DataFrame:
    """``filename,split,original,label`` for every video; labels from a DFDC metadata.json (or a metadata CSV)."""
    names = [video_name(p.name) for p in paths]
    table = pd.DataFrame({"filename": names, "split": "", "original": "", "label": ""})
    if labels is None:
        return table
    read = read_metadata_json if labels.suffix.lower() == ".json" else read_metadata_csv
    entries = merge_entries(read(labels)).entries
    for i, name in enumerate(names):
        e = entries.get(name)
        if e is None:
            problems.add(f"videos not in {labels.name} (unlabelled)", name)
            continue
        table.loc[i, ["split", "original", "label"]] = [e.split or "", e.original or "",
                                                        "" if e.label is None else ("FAKE" if e.label else "REAL")]
    return table


@dataclass(frozen=True)
class FacesJob:
    """One task: whole videos (absolute paths) cropped into ``<out>/<video stem>/``."""

    videos: tuple[str, ...]
    out: str
    params: FaceParams


def faces_task(job: FacesJob) -> list[VideoResult]:
    """Task: the crops of each video of ``job``, one result per video. Harmless to rerun: a video whose folder is
    complete (it is renamed into place whole) is skipped."""
    results = []
    for video in map(Path, job.videos):
        folder = Path(job.out) / video_stem(video_name(video.name))
        if folder.is_dir():
            results.append(_done_before(video, folder))
            continue
        detector = process_detector(job.params)
        start = time.perf_counter()
        result = extract_video(video, folder, detector, job.params)
        result.seconds = time.perf_counter() - start
        results.append(result)
    return results


def _done_before(video: Path, folder: Path) -> VideoResult:
    return VideoResult(video_name(video.name), faces=len(list(folder.glob("*.png"))), done_before=True)


def extract_faces(videos: Path, out: Path, params: FaceParams, labels: Path | None = None,
                  executor: ExecutorSpec | None = None) -> tuple[list[VideoResult], Problems]:
    """Every video of ``videos`` into ``out``; skips videos whose folder is already complete. The videos left
    run here one by one, or as Dask tasks of ``chunk_videos`` videos (the cluster is started only when there is
    a video to do); problems are listed in video order either way."""
    paths = list_videos(videos)
    problems = Problems()
    table = labels_table(paths, labels, problems)
    out.mkdir(parents=True, exist_ok=True)
    results: list[VideoResult | None] = [None] * len(paths)
    todo = []
    for i, path in enumerate(paths):
        folder = out / video_stem(video_name(path.name))
        if folder.is_dir():
            results[i] = _done_before(path, folder)
        else:
            todo.append(i)
    if todo:
        with (executor or ExecutorSpec()).open() as ex:
            size = 1 if ex.in_process else params.chunk_videos
            chunks = [todo[j:j + size] for j in range(0, len(todo), size)]
            jobs = [FacesJob(tuple(str(paths[i].absolute()) for i in chunk), str(out.absolute()), params)
                    for chunk in chunks]
            for n, done in ex.map(faces_task, jobs, desc="faces", unit="video" if size == 1 else "chunk", gpu=True):
                for i, result in zip(chunks[n], done):
                    results[i] = result
    for path, result in zip(paths, results):
        if result.error:
            problems.add("unreadable videos (listed with no faces)", f"{path.name} ({result.error})")
        elif result.faces == 0 and not result.done_before:
            problems.add("videos where no face was found", path.name)
    with atomic_path(out / "metadata.csv") as tmp:
        table.to_csv(tmp, index=False)
    return results, problems
