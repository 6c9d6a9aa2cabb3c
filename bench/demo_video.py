"""Short ``.mp4`` clips of a real face for tests and the faces benchmark, made offline.

The face is matplotlib's bundled sample photo ``grace_hopper.jpg`` (a public-domain portrait): a face detector
trained on real faces finds it, where drawn faces fail. Each clip moves and scales the photo over a noisy
background, frame by frame, and is encoded with PyAV (H.264, or MPEG-4 where H.264 is missing).
:func:`render_small_face` renders a small face in a large frame in dim light (the case of ``[faces] second_pass``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

FPS = 10


def face_photo() -> Image.Image:
    from matplotlib import cbook

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


# The face in the photo, as MTCNN boxes it: x, y, w, h in pixels of the 512 x 600 photo.
FACE_IN_PHOTO = (178, 110, 173, 220)


def render_small_face(n_frames: int, width: int = 1920, height: int = 1080, face_height: int = 60,
                      contrast: float = 0.155, level: float = 40, noise: float = 3, seed: int = 0,
                      ) -> tuple[list[np.ndarray], list[tuple[float, float, float, float]]]:
    """A person a few metres away in dim light: RGB uint8 frames where the photo is scaled so that its face is
    ``face_height`` pixels tall, its contrast cut to ``contrast`` around a dark grey ``level`` (the background's
    level too), with Gaussian noise of ``noise`` grey levels; the face drifts left to right across the middle of the
    frame. Also returns each frame's face box (x, y, w, h in frame pixels) where the renderer put it."""
    rng = np.random.default_rng(seed)
    photo = face_photo()
    fx, fy, fw, fh = FACE_IN_PHOTO
    photo_h = round(face_height * photo.height / fh)
    photo_w = round(photo_h * photo.width / photo.height)
    sx, sy = photo_w / photo.width, photo_h / photo.height
    small = np.asarray(photo.resize((photo_w, photo_h), Image.Resampling.BILINEAR), np.float32)
    small = level + (small - small.mean()) * contrast
    frames, boxes = [], []
    for i in range(n_frames):
        t = i / max(1, n_frames - 1)
        x = int((width - photo_w) * (0.3 + 0.4 * t))
        y = int((height - photo_h) * (0.35 + 0.1 * np.sin(2 * np.pi * t)))
        canvas = np.full((height, width, 3), level, np.float32)
        canvas[y:y + photo_h, x:x + photo_w] = small
        canvas += rng.normal(0, noise, canvas.shape)
        frames.append(np.clip(canvas, 0, 255).astype(np.uint8))
        boxes.append((x + fx * sx, y + fy * sy, fw * sx, fh * sy))
    return frames, boxes


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
