"""Short ``.mp4`` clips of a real face for tests and the faces benchmark, made offline.

The face is matplotlib's bundled sample photo ``grace_hopper.jpg`` (a public-domain portrait): a face detector
trained on real faces finds it, where drawn faces fail. Each clip moves and scales the photo over a noisy
background, frame by frame, and is encoded with PyAV (H.264, or MPEG-4 where H.264 is missing).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

FPS = 10


def face_photo() -> Image.Image:
    import matplotlib.cbook as cbook

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        return Image.open(f).convert("RGB")


def render_frames(n_frames: int, width: int = 480, height: int = 360, seed: int = 0,
                  hidden: tuple[int, ...] = ()) -> list[np.ndarray]:
    """RGB uint8 frames (height, width, 3): the photo drifts and scales over a noisy grey background.
    Frames in ``hidden`` show only the background (no face)."""
    rng = np.random.default_rng(seed)
    photo = face_photo()
    frames = []
    for i in range(n_frames):
        canvas = np.full((height, width, 3), 90 + 20 * (seed % 3), np.float32)
        if i not in hidden:
            t = i / max(1, n_frames - 1)
            face_h = int(height * (0.55 + 0.2 * t))
            face_w = int(face_h * photo.width / photo.height)
            small = np.asarray(photo.resize((face_w, face_h), Image.Resampling.BILINEAR), np.float32)
            x = int((width - face_w) * (0.2 + 0.6 * t))
            y = int((height - face_h) * (0.5 + 0.3 * np.sin(2 * np.pi * t)))
            canvas[y:y + face_h, x:x + face_w] = small
        canvas += rng.normal(0, 4, canvas.shape)
        frames.append(np.clip(canvas, 0, 255).astype(np.uint8))
    return frames


def write_video(path: Path, frames: list[np.ndarray], fps: int = FPS) -> Path:
    """Encode RGB frames as an .mp4 with PyAV."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames[0].shape[:2]
    with av.open(str(path), mode="w") as container:
        try:
            stream = container.add_stream("libx264", rate=fps)
        except (av.FFmpegError, ValueError):
            stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
