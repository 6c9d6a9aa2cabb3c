"""Frame sampling policies, set in the config's ``[sampling]`` table."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FRAME_POLICIES = ("all", "every", "linspace")
FACE_POLICIES = ("first", "all")


@dataclass(frozen=True)
class SamplingPolicy:
    """Which crops of a video to keep.

    frames: "all", "every" (every k-th available frame) or "linspace" (``count`` evenly spaced frames,
    ``np.linspace`` over the available ones; a video with fewer keeps all it has).
    faces: "first" (only ``<frame>.png``) or "all".
    """

    frames: str = "all"
    every: int = 1
    count: int = 32
    faces: str = "all"

    def select_frames(self, frames: np.ndarray) -> np.ndarray:
        """Sampled frame numbers from the sorted unique available ones, shape (n,) -> (m,), m <= n."""
        frames = np.asarray(frames)
        if self.frames == "every":
            return frames[:: self.every]
        if self.frames == "linspace" and len(frames) > self.count:
            return frames[np.linspace(0, len(frames) - 1, self.count).round().astype(int)]
        return frames

    def keep_face(self, face: int) -> bool:
        return self.faces == "all" or face == 1

    def sample(self, crops: list) -> list:
        """The kept crops (objects with ``frame`` and ``face``) of one video, in their order."""
        frames = np.unique([c.frame for c in crops]) if crops else np.array([], dtype=int)
        keep = set(self.select_frames(frames).tolist())
        return [c for c in crops if c.frame in keep and self.keep_face(c.face)]
