"""The dataset stage's config tables, checked: ``[synth]``, ``[prepare]``, ``[sampling]``, ``[faces]``, ``[splits]``."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from common.config import MAX_SEED, Table, section, seed
from common.errors import DataError

from .sampling import FACE_POLICIES, FRAME_POLICIES, SamplingPolicy

METHODS = ("lowres", "color", "seam", "upsample", "flicker")     # the synthetic manipulation methods
SPLITS = ("train", "blend", "test")
MAX_VIDEOS, MAX_FRAMES, MAX_SIZE = 1_000_000, 10_000, 1024     # bounds of the synthetic dataset
MAX_FOLDS = 1000
VERIFY_MODES = ("decode", "header", "none")
SECOND_PASSES = ("upscale", "tiles", "off")     # [faces] second_pass


@dataclass(frozen=True)
class SynthParams:
    """Everything the embedded dataset is a function of (saved as ``synth.json`` beside it)."""

    seed: int
    videos: int
    frames: int
    size: int
    fakes_per_original: float
    frame_stride: int
    min_frame_fraction: float
    dropped_frame_rate: float
    second_face_rate: float
    missing_folder_rate: float
    clean_frame_rate: float
    jpeg_quality: tuple[int, int]
    noise_sigma: tuple[float, float]
    strength: tuple[float, float]
    methods: tuple[str, ...]

    def replace(self, **overrides) -> SynthParams:
        """A copy with the given fields (None leaves a field as it is), checked as the config is."""
        p = SynthParams(**{**asdict(self), **{k: v for k, v in overrides.items() if v is not None}})
        if not (2 <= p.videos <= MAX_VIDEOS and 1 <= p.frames <= MAX_FRAMES and 32 <= p.size <= MAX_SIZE
                and 0 <= p.seed <= MAX_SEED):
            raise DataError(f"synth: need 2 <= --videos <= {MAX_VIDEOS}, 1 <= --frames <= {MAX_FRAMES}, "
                            f"32 <= --size <= {MAX_SIZE} and 0 <= --seed <= {MAX_SEED}")
        return p


@dataclass(frozen=True)
class FaceParams:
    """``[faces]``: how ``data faces`` samples video frames, detects faces and crops them."""

    frames: str               # "every" or "linspace"
    every: int
    count: int
    detect_max_side: int
    min_face_size: int
    min_confidence: float
    margin: float
    size: int
    max_faces: int
    batch_size: int
    chunk_videos: int         # videos per task with --executor dask
    second_pass: str          # one of SECOND_PASSES: frames without a face are searched again
    second_detect_max_side: int
    tile_size: int            # "tiles": square tiles, in pixels at the second pass's scale
    tile_overlap: int
    merge_overlap: float      # "tiles": boxes sharing more than this fraction of the smaller one are one face

    @property
    def sampling(self) -> SamplingPolicy:
        """Which video frames to decode: the same every-k / linspace rule ``prepare`` applies to crops."""
        return SamplingPolicy(frames=self.frames, every=self.every, count=self.count)


@dataclass(frozen=True)
class PrepareSettings:
    verify_images: str        # one of VERIFY_MODES
    workers: int
    examples: int


@dataclass(frozen=True)
class SplitSettings:
    fractions: dict           # {"train": f, "blend": f, "test": f}, summing to 1
    folds: int


@dataclass(frozen=True)
class DataSettings:
    seed: int
    synth: SynthParams
    synth_workers: int
    prepare: PrepareSettings
    sampling: SamplingPolicy
    faces: FaceParams
    splits: SplitSettings


def synth_params(t: Table, master_seed: int) -> SynthParams:
    q = t.number_range("jpeg_quality", 1, 100, integers=True)
    return SynthParams(
        seed=master_seed, videos=t.integer("videos", 2, MAX_VIDEOS), frames=t.integer("frames", 1, MAX_FRAMES),
        size=t.integer("size", 32, MAX_SIZE),
        fakes_per_original=t.number("fakes_per_original", 0, open_low=True), frame_stride=t.integer("frame_stride", 1),
        min_frame_fraction=t.fraction("min_frame_fraction"), dropped_frame_rate=t.fraction("dropped_frame_rate"),
        second_face_rate=t.fraction("second_face_rate"), missing_folder_rate=t.fraction("missing_folder_rate"),
        clean_frame_rate=t.fraction("clean_frame_rate"), jpeg_quality=(int(q[0]), int(q[1])),
        noise_sigma=t.number_range("noise_sigma", 0), strength=t.number_range("strength", 0, 1),
        methods=tuple(t.strings("methods", METHODS)))


def face_params(t: Table) -> FaceParams:
    detect_side, second = t.integer("detect_max_side", 16, 8192), t.choice("second_pass", SECOND_PASSES)
    tile_size = t.integer("tile_size", 16, 8192)
    return FaceParams(
        frames=t.choice("frames", ("every", "linspace")), every=t.integer("every", 1), count=t.integer("count", 1),
        detect_max_side=detect_side, min_face_size=t.integer("min_face_size", 1),
        min_confidence=t.fraction("min_confidence"), margin=t.number("margin", 0, 4), size=t.integer("size", 8, 1024),
        max_faces=t.integer("max_faces", 1), batch_size=t.integer("batch_size", 1),
        chunk_videos=t.integer("chunk_videos", 1, MAX_VIDEOS), second_pass=second,
        # a second pass sees the frame larger than the first did (whatever the value when it is off)
        second_detect_max_side=t.integer("second_detect_max_side", 16 if second == "off" else detect_side + 1, 8192),
        tile_size=tile_size, tile_overlap=t.integer("tile_overlap", 0, tile_size - 1),
        merge_overlap=t.number("merge_overlap", 0, 1, open_low=True))


def sampling_policy(t: Table) -> SamplingPolicy:
    return SamplingPolicy(frames=t.choice("frames", FRAME_POLICIES), every=t.integer("every", 1),
                          count=t.integer("count", 1), faces=t.choice("faces", FACE_POLICIES))


def split_settings(t: Table) -> SplitSettings:
    fractions = {s: t.fraction(s) for s in SPLITS}
    if abs(sum(fractions.values()) - 1) > 1e-6:
        raise DataError(f"{t.source}: train + blend + test must sum to 1, got {sum(fractions.values()):g}")
    return SplitSettings(fractions, t.integer("folds", 2, MAX_FOLDS))


def load_settings(config: dict) -> DataSettings:
    """Every table the dataset stage reads, checked; the first bad key is one line naming file, table and key."""
    synth, prep = section(config, "synth"), section(config, "prepare")
    return DataSettings(
        seed=seed(config), synth=synth_params(synth, seed(config)), synth_workers=synth.integer("workers", 1),
        prepare=PrepareSettings(prep.choice("verify_images", VERIFY_MODES), prep.integer("workers", 1),
                                prep.integer("examples", 1)),
        sampling=sampling_policy(section(config, "sampling")), faces=face_params(section(config, "faces")),
        splits=split_settings(section(config, "splits")))
