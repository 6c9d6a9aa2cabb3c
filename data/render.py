"""Parametric face renderer for the synthetic DFDC-like dataset (numpy only, anti-aliased).

Image coordinates run over [-1, 1] on both axes; a face lives in its own (u, v) coordinates, centred on
the face, before pose (translation, rotation, scale). All colours are float RGB in [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

SKIN_LIGHT = np.array([0.96, 0.82, 0.72])
SKIN_DARK = np.array([0.36, 0.24, 0.17])
HAIR_COLOURS = np.array([[0.08, 0.06, 0.05], [0.30, 0.20, 0.12], [0.55, 0.40, 0.22],
                         [0.85, 0.72, 0.45], [0.55, 0.25, 0.10], [0.62, 0.62, 0.62]])
IRIS_COLOURS = np.array([[0.35, 0.20, 0.10], [0.20, 0.35, 0.60], [0.25, 0.45, 0.30], [0.15, 0.10, 0.08]])


@dataclass(frozen=True)
class Identity:
    """Everything that makes one person look like themselves. Outer = head, hair, scene; inner = face parts."""

    # outer
    face_a: float
    face_b: float
    chin: float
    power: float
    hair: tuple
    hair_long: float
    fringe: float
    fringe_wave: float
    bg1: tuple
    bg2: tuple
    bg_angle: float
    light: tuple
    tint: tuple
    # inner
    skin: tuple
    eye_dx: float
    eye_dy: float
    eye_rx: float
    eye_ry: float
    iris: tuple
    brow_gap: float
    brow_thick: float
    brow_slant: float
    brow_len: float
    nose_len: float
    nose_w: float
    mouth_dy: float
    mouth_w: float
    mouth_h: float
    lip: tuple

    @classmethod
    def random(cls, rng: np.random.Generator) -> "Identity":
        skin = SKIN_LIGHT + (SKIN_DARK - SKIN_LIGHT) * rng.uniform() + rng.normal(0, 0.02, 3)
        hair = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] + rng.normal(0, 0.03, 3)
        lip = skin * np.array([0.95, 0.62, 0.62]) + np.array([0.08, 0.0, 0.02])
        return cls(
            face_a=rng.uniform(0.46, 0.56), face_b=rng.uniform(0.60, 0.70), chin=rng.uniform(0.95, 1.12),
            power=rng.uniform(1.9, 2.6), hair=tuple(np.clip(hair, 0, 1)), hair_long=rng.uniform(-0.2, 0.9),
            fringe=rng.uniform(0.42, 0.72), fringe_wave=rng.uniform(0.0, 0.06),
            bg1=tuple(rng.uniform(0.1, 0.9, 3)), bg2=tuple(rng.uniform(0.1, 0.9, 3)),
            bg_angle=rng.uniform(0, 2 * np.pi), light=(rng.uniform(-0.3, 0.3), rng.uniform(-0.3, 0.1)),
            tint=tuple(1 + rng.normal(0, 0.04, 3)),
            skin=tuple(np.clip(skin, 0, 1)), eye_dx=rng.uniform(0.17, 0.23), eye_dy=rng.uniform(-0.16, -0.06),
            eye_rx=rng.uniform(0.075, 0.10), eye_ry=rng.uniform(0.032, 0.048), iris=tuple(IRIS_COLOURS[rng.integers(4)]),
            brow_gap=rng.uniform(0.08, 0.12), brow_thick=rng.uniform(0.015, 0.035), brow_slant=rng.uniform(-0.25, 0.25),
            brow_len=rng.uniform(0.08, 0.12), nose_len=rng.uniform(0.16, 0.24), nose_w=rng.uniform(0.05, 0.08),
            mouth_dy=rng.uniform(0.26, 0.34), mouth_w=rng.uniform(0.12, 0.18), mouth_h=rng.uniform(0.025, 0.04),
            lip=tuple(np.clip(lip, 0, 1)),
        )

    def with_inner(self, other: "Identity", skin=None) -> "Identity":
        """This head and scene with ``other``'s face parts (a face swap), on ``skin`` (default: this skin)."""
        inner = {k: getattr(other, k) for k in INNER_FIELDS}
        inner["skin"] = tuple(self.skin if skin is None else skin)
        return replace(self, **inner)


INNER_FIELDS = ("eye_dx", "eye_dy", "eye_rx", "eye_ry", "iris", "brow_gap", "brow_thick", "brow_slant",
                "brow_len", "nose_len", "nose_w", "mouth_dy", "mouth_w", "mouth_h", "lip")


@dataclass(frozen=True)
class Pose:
    cx: float = 0.0
    cy: float = 0.0
    scale: float = 1.0
    angle: float = 0.0
    yaw: float = 0.0
    eye_open: float = 1.0
    mouth_open: float = 0.0

    def shifted(self, dx: float, dy: float, scale: float = 1.0) -> "Pose":
        return replace(self, cx=self.cx + dx, cy=self.cy + dy, scale=self.scale * scale)


@lru_cache(maxsize=8)
def image_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres in [-1, 1], each of shape (size, size)."""
    c = ((np.arange(size, dtype=np.float32) + 0.5) / size) * 2 - 1
    return np.meshgrid(c, c)


def face_coords(pose: Pose, size: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Face coordinates (u, v) of every pixel, and one pixel's width in face units."""
    x, y = image_grid(size)
    dx, dy = x - pose.cx, y - pose.cy
    c, s = float(np.cos(pose.angle)), float(np.sin(pose.angle))
    u = (c * dx + s * dy) / pose.scale
    v = (-s * dx + c * dy) / pose.scale
    return u, v, 2.0 / size / pose.scale


def soft(dist: np.ndarray, width: float) -> np.ndarray:
    """Coverage of a shape from its signed distance (negative inside), with edges ``width`` wide."""
    return np.clip(0.5 - dist / width, 0.0, 1.0)


def ellipse_dist(u, v, cx, cy, rx, ry):
    """Approximate signed distance to an ellipse; exact enough along thin ellipses too."""
    d = (np.sqrt(((u - cx) / rx) ** 2 + ((v - cy) / ry) ** 2) - 1) * min(rx, ry)
    return np.maximum(d, np.maximum(np.abs(u - cx) - rx, np.abs(v - cy) - ry))


def paint(img: np.ndarray, mask: np.ndarray, colour) -> None:
    """Alpha-blend ``colour`` (3,) or (H, W, 3) into ``img`` (H, W, 3) where ``mask`` (H, W) covers it.

    Only the bounding box of the mask is touched, which keeps small face parts cheap.
    """
    rows = np.flatnonzero(mask.max(axis=1) > 0)
    if rows.size == 0:
        return
    cols = np.flatnonzero(mask.max(axis=0) > 0)
    box = np.s_[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    colour = np.asarray(colour, dtype=np.float32)
    sub = img[box]
    sub += mask[box][..., None] * ((colour[box] if colour.ndim == 3 else colour) - sub)


def background(ident: Identity, size: int) -> np.ndarray:
    x, y = image_grid(size)
    t = np.clip(0.5 + 0.5 * (x * np.cos(ident.bg_angle) + y * np.sin(ident.bg_angle)), 0, 1)[..., None]
    return (np.asarray(ident.bg1, np.float32) * (1 - t) + np.asarray(ident.bg2, np.float32) * t).astype(np.float32)


def face_mask(ident: Identity, u, v, px):
    """Coverage of the head outline: a superellipse, longer below the eyes by ``chin``."""
    b = np.where(v < 0, ident.face_b, ident.face_b * ident.chin)
    r = (np.abs(u / ident.face_a) ** ident.power + np.abs(v / b) ** ident.power) ** (1 / ident.power)
    return soft((r - 1) * ident.face_a, 1.5 * px)


def inner_mask(ident: Identity, pose: Pose, size: int, edge: float) -> np.ndarray:
    """The swapped region of a face swap: an ellipse over brows, eyes, nose and mouth; ``edge`` = blend width."""
    u, v, px = face_coords(pose, size)
    d = ellipse_dist(u, v, 0.0, 0.06, 0.80 * ident.face_a, 0.66 * ident.face_b)
    return soft(d, max(edge, 1.5 * px))


def render(ident: Identity, pose: Pose, size: int) -> np.ndarray:
    """One face crop, shape (size, size, 3), float32 in [0, 1]."""
    img = background(ident, size)
    u, v, px = face_coords(pose, size)
    aa = 1.5 * px
    skin = np.asarray(ident.skin, np.float32)
    hair = np.asarray(ident.hair, np.float32)
    a, b = ident.face_a, ident.face_b

    # hair behind the head, longer hair down to the shoulders
    back = soft(ellipse_dist(u, v, 0.0, -0.08, a * 1.14, b * 1.04), aa)
    if ident.hair_long > 0:
        back = np.maximum(back, soft(np.maximum(np.abs(u) - a * 1.12, v - ident.hair_long), aa) * (v > -0.1))
    paint(img, back, hair * 0.9)
    paint(img, soft(np.maximum(np.abs(u) - a * 0.45, 0.3 * b - v), aa), skin * 0.78)          # neck
    for side in (-1, 1):                                                                      # ears
        paint(img, soft(ellipse_dist(u, v, side * a * 0.97, 0.02, 0.07, 0.13), aa), skin * 0.9)

    # the face, lit from ``light``, with a little roundness
    head = face_mask(ident, u, v, px)
    lx, ly = ident.light
    round_ = np.sqrt(np.clip(1 - (u / a) ** 2 - (v / b) ** 2 * 0.5, 0, 1))
    shade = (0.82 + lx * u / a + ly * v / b + 0.18 * round_)[..., None]
    paint(img, head, skin * shade)
    for side in (-1, 1):                                                                      # cheeks
        paint(img, 0.18 * soft(ellipse_dist(u, v, side * a * 0.5, 0.22, 0.12, 0.08), 0.06), skin * [1.05, 0.8, 0.8])

    # face parts move a little with the head's yaw
    uu = u - pose.yaw * 0.06
    dark = skin * 0.35
    for side in (-1, 1):
        ex, ey = side * ident.eye_dx, ident.eye_dy
        paint(img, 0.35 * soft(ellipse_dist(uu, v, ex, ey, ident.eye_rx * 1.4, ident.eye_ry * 2.2), 0.04), skin * 0.8)
        ry = ident.eye_ry * max(pose.eye_open, 0.08)
        eye = soft(ellipse_dist(uu, v, ex, ey, ident.eye_rx, ry), aa)
        paint(img, eye, [0.93, 0.91, 0.88])
        iris_r = ident.eye_ry * 1.05
        paint(img, eye * soft(ellipse_dist(uu, v, ex + pose.yaw * 0.015, ey, iris_r, iris_r), aa), ident.iris)
        paint(img, eye * soft(ellipse_dist(uu, v, ex + pose.yaw * 0.015, ey, iris_r * 0.45, iris_r * 0.45), aa),
              [0.03, 0.03, 0.03])
        lid = np.abs(ellipse_dist(uu, v, ex, ey, ident.eye_rx, ry)) - 0.5 * px
        paint(img, soft(lid, aa) * (v < ey + ry * 0.3), dark)
        bx = uu - ex
        curve = ey - ident.brow_gap + side * ident.brow_slant * bx * 0.4 + 2.0 * bx**2
        brow = soft(np.maximum(np.abs(v - curve) - ident.brow_thick / 2, np.abs(bx) - ident.brow_len), aa)
        paint(img, brow, hair * 0.8)

    ny = ident.eye_dy + ident.nose_len
    bridge = soft(np.maximum(np.abs(uu - ident.nose_w * 0.4) - 0.008, np.maximum(ident.eye_dy - v, v - ny)), 0.02)
    paint(img, 0.25 * bridge, skin * 0.6)
    paint(img, 0.3 * soft(ellipse_dist(uu, v, 0.0, ny - 0.02, ident.nose_w, ident.nose_w * 0.6), 0.04), skin * 1.08)
    for side in (-1, 1):
        paint(img, soft(ellipse_dist(uu, v, side * ident.nose_w * 0.5, ny, 0.022, 0.011), aa), skin * 0.4)

    my = ident.mouth_dy
    opening = ident.mouth_h * (0.1 + pose.mouth_open)
    paint(img, soft(ellipse_dist(uu, v, 0.0, my, ident.mouth_w, ident.mouth_h + opening * 0.6), aa), ident.lip)
    paint(img, soft(ellipse_dist(uu, v, 0.0, my, ident.mouth_w * 0.8, max(opening * 0.7, 0.4 * px)), aa),
          [0.25, 0.06, 0.06])

    # fringe over the forehead
    edge = -b * ident.fringe + ident.fringe_wave * np.sin(u * 18.0)
    paint(img, head * soft(v - edge, aa), hair)

    img *= np.asarray(ident.tint, np.float32)
    return np.clip(img, 0, 1)
