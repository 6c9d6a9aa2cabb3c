"""``python -m data synth``: the embedded DFDC-like face-crop dataset, in exactly the faces layout.

Each REAL "original" is a short video of one rendered identity with head motion, blinking, talking,
sensor noise and lossy compression. Each FAKE re-renders its original's video with another identity's
inner face swapped in. Source identities come from their own pool, never shown unmanipulated, so a
detector has to find the swap's traces rather than recognise people. Five manipulation methods each leave
a different trace:

- ``lowres``: the swapped face is rendered at low resolution and upscaled (blur);
- ``color``: the swapped skin keeps the source identity's tone (colour mismatch at the mask edge);
- ``seam``: a hard-edged, slightly misaligned paste with a visible blending seam;
- ``upsample``: blocky 2x upsampling plus a periodic checkerboard, as left by transposed convolutions;
- ``flicker``: brightness and position of the swap jitter from frame to frame.

Artifact strength varies per video and per frame; ``clean_frame_rate`` of a fake's frames carry none.
The output is a deterministic function of the flags; a killed run resumes where it stopped.
"""
from __future__ import annotations

import csv
import io
import json
import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from PIL import Image
from tqdm import tqdm

from common.atomic import write_json, write_text
from common.errors import DataError

from .render import Identity, Pose, inner_mask, render
from .settings import SynthParams

PARAMS_FILE = "synth.json"
LETTERS = np.array(list("abcdefghijklmnopqrstuvwxyz"))
BYSTANDER_IDENTITIES = 10_000   # identity index offsets: originals 0.., background faces, swap sources
SOURCE_IDENTITIES = 20_000
PNG_LEVEL = 1                   # zlib level of the written crops: lossless either way, 2.5x faster to encode than 6


@dataclass(frozen=True)
class Traces:
    """How strongly each manipulation method marks a frame at artifact strength 1 (sizes in face units)."""

    blend_edge: float = 0.06            # soft edge of the swap mask when no seam is wanted
    lowres_factor: float = 7.0          # lowres: downscale factor 1 + 7 s
    color_shift: float = 1.0            # color: share of the source's skin tone kept
    color_cast: tuple = (0.06, -0.02, -0.05)
    seam_offset: float = 0.035          # seam: misalignment of the pasted face
    seam_scale: float = 0.04
    seam_ring: float = 0.2              # seam: brightness of the blending seam
    upsample_block: float = 4.0         # upsample: nearest-neighbour block size in pixels
    checker: float = 0.06               # upsample: amplitude of the periodic pattern
    checker_periods: tuple = (1, 2, 4)  # half-periods in pixels
    flicker_gain: float = 0.2           # flicker: brightness jump of the swap
    flicker_shift: float = 0.03         # flicker: position jitter of the swap
    frame_strength_min: float = 0.5     # a non-clean frame's strength is video strength x U(min, 1)


TRACE = Traces()


@dataclass(frozen=True)
class VideoPlan:
    """Everything needed to render one video, so any video can be rendered alone (resume, parallelism)."""

    index: int
    video: str
    label: int
    original: str | None
    family: int
    method: str | None
    source: int | None          # identity index of the swapped-in face (FAKE only)
    strength: float
    frames: tuple[int, ...]
    second_face: tuple[int, ...]  # frames that also hold a background face (_2.png)
    jpeg_quality: int
    noise: float
    missing: bool


def _names(rng: np.random.Generator, n: int) -> list[str]:
    names: list[str] = []
    seen = set()
    while len(names) < n:
        name = "".join(rng.choice(LETTERS, 10))
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def make_plan(p: SynthParams) -> list[VideoPlan]:
    """The dataset's videos, deterministic in ``p``: originals, their fakes, frames, quirks."""
    rng = np.random.default_rng([p.seed, 0])
    n_real = max(1, round(p.videos / (1 + p.fakes_per_original)))
    n_fake = p.videos - n_real
    share = rng.gamma(4.0, size=n_real)
    fakes_of = rng.multinomial(n_fake, share / share.sum())
    names = _names(rng, p.videos)
    methods = [p.methods[i % len(p.methods)] for i in rng.permutation(n_fake)]
    families_with_face2 = set(np.flatnonzero(rng.uniform(size=n_real) < p.second_face_rate).tolist())
    n_missing = round(p.videos * p.missing_folder_rate)
    missing = set(rng.choice(p.videos, size=n_missing, replace=False).tolist()) if n_missing else set()
    min_frames = max(1, math.ceil(p.frames * p.min_frame_fraction))

    plans, k, fake_i = [], 0, 0
    for family in range(n_real):
        window = np.sort(rng.uniform(0, 1, 2)) if family in families_with_face2 else None
        for j in range(1 + fakes_of[family]):
            n = int(rng.integers(min_frames, p.frames + 1))
            frames = np.arange(n) * p.frame_stride
            keep = rng.uniform(size=n) >= p.dropped_frame_rate
            keep[rng.integers(n)] = True
            frames = frames[keep]
            second = ()
            if window is not None:
                pos = np.arange(n)[keep] / max(n - 1, 1)
                second = tuple(int(f) for f in frames[(pos >= window[0]) & (pos <= window[1])])
            is_fake = j > 0
            source = SOURCE_IDENTITIES + fake_i if is_fake else None
            plans.append(VideoPlan(
                index=k, video=f"{names[k]}.mp4", label=int(is_fake),
                original=f"{names[k - j]}.mp4" if is_fake else None, family=family,
                method=methods[fake_i] if is_fake else None, source=source,
                strength=float(rng.uniform(*p.strength)) if is_fake else 0.0,
                frames=tuple(int(f) for f in frames), second_face=second,
                jpeg_quality=int(rng.integers(p.jpeg_quality[0], p.jpeg_quality[1] + 1)),
                noise=float(rng.uniform(*p.noise_sigma)), missing=k in missing))
            fake_i += is_fake
            k += 1
    return plans


def identity(p: SynthParams, index: int) -> Identity:
    return Identity.random(np.random.default_rng([p.seed, 1, index]))


def pose(p: SynthParams, family: int, frame: int, background: bool = False) -> Pose:
    """Head pose of a family's video at ``frame``: smooth motion, seeded blinks and talking."""
    m = np.random.default_rng([p.seed, 2, family, int(background)]).uniform(size=12)
    t = frame / 30.0
    ev = np.random.default_rng([p.seed, 3, family, int(background), frame]).uniform(size=2)
    return Pose(
        cx=0.08 * (m[0] - 0.5) + 0.06 * m[1] * math.sin(2 * math.pi * (0.2 + 0.5 * m[2]) * t + 6 * m[3]),
        cy=0.06 + 0.05 * m[4] * math.sin(2 * math.pi * (0.2 + 0.4 * m[5]) * t + 6 * m[6]),
        scale=(0.92 + 0.16 * m[7]) * (1 + 0.04 * math.sin(2 * math.pi * 0.3 * t + 6 * m[8])),
        angle=0.12 * m[9] * math.sin(2 * math.pi * 0.25 * t + 6 * m[10]),
        yaw=0.8 * (m[11] - 0.5) * math.cos(2 * math.pi * 0.15 * t),
        eye_open=float(0.05 + 0.2 * ev[0]) if ev[1] < 0.12 else 1.0,
        mouth_open=float(abs(math.sin(2 * math.pi * (0.8 + m[2]) * t + 6 * m[5]))),
    )


def _resample(img: np.ndarray, factor: float, resample) -> np.ndarray:
    """Down- then up-sample ``img`` (H, W, 3) by ``factor`` with the PIL filter ``resample``."""
    size = img.shape[0]
    small = max(4, round(size / factor))
    pil = Image.fromarray((img * 255).round().astype(np.uint8))
    out = pil.resize((small, small), Image.BILINEAR).resize((size, size), resample)
    return np.asarray(out, dtype=np.float32) / 255


def swap_frame(p: SynthParams, plan: VideoPlan, target: Identity, source: Identity, base: Pose,
               s: float, rng: np.random.Generator) -> np.ndarray:
    """One frame of a FAKE: ``source``'s inner face on ``target`` by ``plan.method`` at strength ``s`` in [0, 1]."""
    size = p.size
    original = render(target, base, size)
    skin = np.asarray(target.skin) if plan.method != "color" else \
        np.asarray(target.skin) + TRACE.color_shift * s * (np.asarray(source.skin) - np.asarray(target.skin)
                                                           + TRACE.color_cast)
    swapped_pose, edge, gain = base, TRACE.blend_edge, 1.0
    if plan.method == "seam":
        swapped_pose = base.shifted(TRACE.seam_offset * s, 0.6 * TRACE.seam_offset * s, 1 + TRACE.seam_scale * s)
        edge = TRACE.blend_edge * (1 - s) + 0.002
    elif plan.method == "flicker":
        angle = rng.uniform(0, 2 * math.pi)
        swapped_pose = base.shifted(TRACE.flicker_shift * s * math.cos(angle), TRACE.flicker_shift * s * math.sin(angle))
        gain = 1 + TRACE.flicker_gain * s * rng.choice([-1.0, 1.0])
    face = render(target.with_inner(source, skin=np.clip(skin, 0, 1)), swapped_pose, size) * gain
    if plan.method == "lowres" and s > 0:
        face = _resample(np.clip(face, 0, 1), 1 + TRACE.lowres_factor * s, Image.BILINEAR)
    elif plan.method == "upsample" and s > 0:
        blocky = _resample(np.clip(face, 0, 1), TRACE.upsample_block, Image.NEAREST)
        x = np.arange(size)
        checker = sum(np.cos(np.pi * x / k)[None, :] * np.cos(np.pi * x / k)[:, None] / k for k in TRACE.checker_periods)
        face = face + s * (blocky - face) + (TRACE.checker * s * checker)[..., None]
    mask = inner_mask(target, swapped_pose, size, edge)[..., None]
    out = original * (1 - mask) + face * mask
    if plan.method == "seam" and s > 0:
        ring = inner_mask(target, swapped_pose, size, 0.03)
        out += (TRACE.seam_ring * s * 4 * ring * (1 - ring))[..., None]
    return np.clip(out, 0, 1)


def finish(img: np.ndarray, noise: float, quality: int, rng: np.random.Generator) -> bytes:
    """Sensor noise and a lossy JPEG round trip, then PNG bytes, as a camera and re-encoder would leave it."""
    noisy = np.clip(img + rng.normal(0, noise, img.shape), 0, 1)
    buf = io.BytesIO()
    Image.fromarray((noisy * 255).round().astype(np.uint8)).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    out = io.BytesIO()
    Image.open(buf).convert("RGB").save(out, format="PNG", compress_level=PNG_LEVEL)
    return out.getvalue()


def frame_strength(p: SynthParams, plan: VideoPlan, rng: np.random.Generator) -> float:
    if rng.uniform() < p.clean_frame_rate:
        return 0.0
    low = 0.0 if plan.method == "flicker" else TRACE.frame_strength_min
    return plan.strength * rng.uniform(low, 1.0)


def render_video(p: SynthParams, plan: VideoPlan, out: Path) -> None:
    """Render one video's crops into ``out/<stem>``, via a temporary folder renamed into place."""
    stem = plan.video[:-4]
    target_dir = out / stem
    if target_dir.exists() or plan.missing:
        return
    tmp = out / f".tmp-{stem}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    rng = np.random.default_rng([p.seed, 4, plan.index])
    target = identity(p, plan.family)
    source = identity(p, plan.source) if plan.source is not None else None
    bystander = identity(p, BYSTANDER_IDENTITIES + plan.family)
    for frame in plan.frames:
        base = pose(p, plan.family, frame)
        if plan.label:
            img = swap_frame(p, plan, target, source, base, frame_strength(p, plan, rng), rng)
        else:
            img = render(target, base, p.size)
        (tmp / f"{frame}.png").write_bytes(finish(img, plan.noise, plan.jpeg_quality, rng))
        if frame in plan.second_face:
            other = render(bystander, pose(p, plan.family, frame, background=True), p.size)
            (tmp / f"{frame}_2.png").write_bytes(finish(other, plan.noise, plan.jpeg_quality, rng))
    tmp.rename(target_dir)


def metadata_csv(plans: list[VideoPlan]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["filename", "split", "original", "label", "method"])
    for plan in sorted(plans, key=lambda q: q.video):
        writer.writerow([plan.video, "train", plan.original or "", "FAKE" if plan.label else "REAL", plan.method or ""])
    return buf.getvalue()


def synthesize(p: SynthParams, out: Path, workers: int = 1, overwrite: bool = False) -> list[VideoPlan]:
    """Write the dataset to ``out``: video folders, then ``metadata.csv`` last. Resumes a killed run."""
    params = {**asdict(p), "jpeg_quality": list(p.jpeg_quality), "noise_sigma": list(p.noise_sigma),
              "strength": list(p.strength), "methods": list(p.methods)}
    marker = out / PARAMS_FILE
    if out.exists() and any(out.iterdir()):
        if not marker.exists():
            raise DataError(f"{out}: exists and was not written by 'data synth'; choose another --out")
        try:
            previous = json.loads(marker.read_text())
        except (OSError, json.JSONDecodeError):
            previous = None
        if previous != params:
            if not overwrite:
                raise DataError(f"{out}: holds a synthetic dataset made with other parameters; "
                                "pass --overwrite to replace it")
            shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(marker, params)
    for stale in out.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    plans = make_plan(p)
    todo = [q for q in plans if not q.missing and not (out / q.video[:-4]).exists()]
    jobs = Parallel(n_jobs=workers, return_as="generator_unordered")(
        delayed(render_video)(p, q, out) for q in todo)
    for _ in tqdm(jobs, total=len(todo), desc="synth videos", unit="video", disable=None):
        pass
    text = metadata_csv(plans)
    listing = out / "metadata.csv"
    if not listing.exists() or listing.read_text(encoding="utf-8") != text:   # unchanged: keep its mtime for make
        write_text(listing, text)
    return plans
