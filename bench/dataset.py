"""``python -m bench data`` and ``bench faces``: throughput of the dataset stage, measured in one run here.

``bench data`` writes ``reports/bench/data.json``: synth frames/s with 1 and N workers, and prepare crops/s for each
``verify_images`` mode, with ratios taken inside the same run (shared machines are noisy). ``bench faces`` measures
``data faces`` (``reports/bench/faces.json``), and ``bench faces --dask N`` the whole ``data faces`` run here
against N Dask workers (``reports/bench/faces_dask.json``).
"""
from __future__ import annotations

import copy
import math
import os
import platform
import tempfile
import time
from pathlib import Path

from common.atomic import write_json

from data.prepare import prepare
from data.settings import VERIFY_MODES, load_settings
from data.synth import synthesize


def run_bench(config: dict, out: Path, videos: int, workers: int) -> dict:
    params = load_settings(config).synth.replace(videos=videos)
    result: dict = {"machine": platform.machine(), "python": platform.python_version(),
                    "videos": videos, "frames_max": params.frames, "size": params.size}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synth = {}
        for n in sorted({1, workers}):
            start = time.perf_counter()
            plans = synthesize(params, tmp / f"synth{n}", workers=n)
            seconds = time.perf_counter() - start
            frames = sum(len(p.frames) for p in plans if not p.missing)
            synth[f"workers_{n}"] = {"seconds": round(seconds, 3), "frames_per_s": round(frames / seconds, 1)}
        synth["speedup"] = round(synth[f"workers_{workers}"]["frames_per_s"] / synth["workers_1"]["frames_per_s"], 2)
        result["synth"] = synth
        result["synth_frames"] = frames

        modes = {}
        for mode in VERIFY_MODES:
            cfg = copy.deepcopy(config)
            cfg["prepare"]["verify_images"] = mode
            start = time.perf_counter()
            _, table, _ = prepare([tmp / "synth1"], f"bench-{mode}", cfg, out_root=tmp / "interim", raw_root=tmp)
            seconds = time.perf_counter() - start
            modes[mode] = {"seconds": round(seconds, 3), "crops_per_s": round(len(table) / seconds, 1)}
        modes["decode_vs_none"] = round(modes["decode"]["seconds"] / modes["none"]["seconds"], 2)
        result["prepare"] = modes
    write_json(out, result)
    return result


def run_faces_bench(config: dict, out: Path, videos: int, frames: int, sizes: list[tuple[int, int]],
                    small_face: tuple[int, int, int, int] | None = None) -> dict:
    """Decode + detect throughput of ``data faces`` on demo clips of each frame size, in one run: videos/s and
    frames/s, decoding and detection timed apart, and batched detection against one frame per MTCNN call. With
    ``small_face`` (frames, width, height, face height): the second pass's recall and time (:func:`small_face_bench`)."""
    from dataclasses import replace

    from data.faces import FaceDetector, read_frames

    from .demo_video import render_frames, write_video

    params = load_settings(config).faces
    result: dict = {"machine": platform.machine(), "python": platform.python_version(), "videos": videos,
                    "frames_per_video": frames, "sampling": f"{params.frames} {params.count}",
                    "detect_max_side": params.detect_max_side, "batch_size": params.batch_size, "sizes": {}}
    detectors = {b: FaceDetector(replace(params, batch_size=b)) for b in (params.batch_size, 1)}
    with tempfile.TemporaryDirectory() as tmp:
        for width, height in sizes:
            clips = [write_video(Path(tmp) / f"{width}x{height}_{i}.mp4",
                                 render_frames(frames, width, height, seed=i)) for i in range(videos)]
            first = read_frames(clips[0], params)[0][1]
            for detector in detectors.values():                   # warm-up: graph tracing at this size
                detector.detect([first] * detector.params.batch_size)
            row, decoded = {}, []
            start = time.perf_counter()
            for clip in clips:
                decoded.append([f for _, f in read_frames(clip, params)])
            decode_s = time.perf_counter() - start
            n_frames = sum(len(d) for d in decoded)
            for batch, detector in detectors.items():
                start = time.perf_counter()
                faces = sum(len(found) for d in decoded for found in detector.detect(d))
                row[f"detect_batch_{batch}"] = {"seconds": round(time.perf_counter() - start, 3),
                                                "frames_per_s": round(n_frames / (time.perf_counter() - start), 1),
                                                "faces": faces}
            total = decode_s + row[f"detect_batch_{params.batch_size}"]["seconds"]
            row.update({"frames": n_frames, "decode_s": round(decode_s, 3),
                        "decode_frames_per_s": round(n_frames / decode_s, 1),
                        "videos_per_s": round(videos / total, 3), "frames_per_s": round(n_frames / total, 1),
                        "batched_over_single": round(row[f"detect_batch_{params.batch_size}"]["frames_per_s"]
                                                     / row["detect_batch_1"]["frames_per_s"], 2)})
            result["sizes"][f"{width}x{height}"] = row
        if small_face:
            result["small_face"] = small_face_bench(params, Path(tmp), *small_face)
    write_json(out, result)
    return result


def small_face_bench(params, tmp: Path, frames: int, width: int, height: int, face_height: int) -> dict:
    """Recall (sampled frames where a face is kept) and detection seconds on one demo clip of a small face in
    dim light, with ``[faces] second_pass`` off, "upscale" and "tiles" (and "upscale" at the clip's full resolution
    when ``second_detect_max_side`` is below it), in one run; the ratios are to "off".
    ``centre_error_px``: the largest distance from a kept face's centre to where the renderer put the face."""
    from dataclasses import replace

    from data.faces import FaceDetector, read_frames

    from .demo_video import render_small_face, write_video

    rendered, boxes = render_small_face(frames, width, height, face_height)
    clip = write_video(tmp / f"small_face_{width}x{height}.mp4", rendered)
    decoded = read_frames(clip, params)
    images = [f for _, f in decoded]
    row: dict = {"size": f"{width}x{height}", "face_height": face_height, "frames": len(images),
                 "detect_max_side": params.detect_max_side, "batch_size": params.batch_size,
                 "tile_size": params.tile_size, "tile_overlap": params.tile_overlap}
    variants = {"off": replace(params, second_pass="off"), "upscale": replace(params, second_pass="upscale"),
                "tiles": replace(params, second_pass="tiles")}
    if max(width, height) > params.second_detect_max_side:      # and the whole frame at full resolution
        variants["upscale_full"] = replace(params, second_pass="upscale", second_detect_max_side=max(width, height))
    for name, variant in variants.items():
        detector = FaceDetector(variant)
        detector.detect(images[: params.batch_size])                # warm-up: graph tracing at these sizes
        start = time.perf_counter()
        found = detector.detect(images)
        seconds = time.perf_counter() - start
        errors = [math.dist(_centre(faces[0][0]), _centre(boxes[i])) for (i, _), faces in zip(decoded, found) if faces]
        row[name] = {"second_detect_max_side": variant.second_detect_max_side,
                     "recall": round(sum(map(bool, found)) / len(images), 3), "seconds": round(seconds, 2),
                     "centre_error_px": round(max(errors), 1) if errors else None}
    for name in list(variants)[1:]:
        row[f"{name}_vs_off_seconds"] = round(row[name]["seconds"] / row["off"]["seconds"], 2)
    return row


def _centre(box) -> tuple[float, float]:
    return box[0] + box[2] / 2, box[1] + box[3] / 2


def run_faces_dask_bench(config: dict, out: Path, videos: int, frames: int, size: tuple[int, int],
                         workers: int) -> dict:
    """``data faces`` on ``videos`` demo clips of ``frames`` frames at ``size``: here, then on a ``local:N``
    Dask cluster (start-up included in both: TensorFlow and MTCNN here, the cluster and its workers there), in
    tasks of videos / (2 N) videos so that every worker gets work. Seconds, frames/s, the ratio, and whether
    the two wrote the same crops."""
    import hashlib
    from dataclasses import replace

    from common.executor import ExecutorSpec

    from data.faces import extract_faces

    from .demo_video import render_frames, write_video

    params = load_settings(config).faces
    params = replace(params, chunk_videos=max(1, videos // (2 * workers)))
    result: dict = {"machine": platform.machine(), "python": platform.python_version(), "cpus": os.cpu_count(),
                    "videos": videos, "frames_per_video": frames, "size": f"{size[0]}x{size[1]}",
                    "sampling": f"{params.frames} {params.count}", "chunk_videos": params.chunk_videos,
                    "workers": workers}
    with tempfile.TemporaryDirectory() as tmp:
        clips = Path(tmp) / "clips"
        for i in range(videos):
            write_video(clips / f"clip{i:04d}.mp4", render_frames(frames, *size, seed=i))
        digests = {}
        for name, executor in (("local", ExecutorSpec()),
                               (f"dask_{workers}", ExecutorSpec.parse("dask", f"local:{workers}"))):
            start = time.perf_counter()
            results, _ = extract_faces(clips, Path(tmp) / name, params, executor=executor)
            seconds = time.perf_counter() - start
            n_frames = sum(r.frames for r in results)
            result[name] = {"seconds": round(seconds, 2), "frames": n_frames, "faces": sum(r.faces for r in results),
                            "frames_per_s": round(n_frames / seconds, 2),
                            "task_seconds": round(sum(r.seconds for r in results), 2)}
            digests[name] = hashlib.sha256(b"".join(p.read_bytes() for p in sorted((Path(tmp) / name).rglob("*.png"))))
    result["dask_vs_local_frames_per_s"] = round(result[f"dask_{workers}"]["frames_per_s"]
                                                 / result["local"]["frames_per_s"], 3)
    result["same_crops"] = len({d.hexdigest() for d in digests.values()}) == 1
    write_json(out, result)
    return result
