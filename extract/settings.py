"""The ``[extract]``, ``[extract.train]``, ``[extract.augment]`` and ``[backbones.*]`` config tables, checked
(without TensorFlow: every command checks the whole config)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from common.config import Table, section, seed
from common.errors import DataError
from data.settings import MAX_FOLDS

from .registry import check_backbone_name

@dataclass(frozen=True)
class Augment:
    """Light train-time augmentation, all stateless so an epoch's batches depend only on (seed, epoch)."""

    flip: bool = True
    brightness: float = 0.1      # max delta as a fraction of the 0..255 range
    contrast: float = 0.15       # factor drawn from [1 - c, 1 + c]
    jpeg_quality: tuple[int, int] = (60, 100)
    jpeg_rate: float = 0.5       # share of images re-encoded as JPEG
    crop: float = 0.1            # zoom in by up to this fraction, at a random offset


@dataclass(frozen=True)
class View:
    """What the network sees of a crop: the central ``crop`` fraction, resized to ``size`` x ``size``."""

    size: int
    crop: float = 1.0


# validation frame metrics that may choose the checkpoint: name -> True when higher is better
MONITORS = {"auc": True, "balanced_log_loss": False}


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    input_size: int
    weights: str
    center_crop: float = 1.0

    @property
    def view(self) -> View:
        return View(self.input_size, self.center_crop)


@dataclass(frozen=True)
class TrainSettings:
    faces: str
    frames_per_video: int
    val_fold: int
    epochs: int
    patience: int
    monitor: str                 # the validation frame metric that chooses the checkpoint and stops early
    batch_size: int
    learning_rate: float
    lr_schedule: str
    dropout: float
    class_weight: str
    augment: Augment | None
    cache_mb: int
    processes: int                # backbones trained at once, each in its own process


@dataclass(frozen=True)
class ExtractSettings:
    backbones: tuple[BackboneSpec, ...]
    batch_size: int
    chunk_videos: int
    embedding_dtype: str          # "float32" or "float16" (half the cache; scores stay float32)
    mixed_precision: str
    intra_op_threads: int
    inter_op_threads: int
    train: TrainSettings
    seed: int

    def as_dict(self) -> dict:
        return asdict(self)


def backbone_spec(config: dict, name: str) -> BackboneSpec:
    try:
        check_backbone_name(name)
    except DataError as e:
        raise DataError(f"{section(config, 'extract').source}: backbones: {e}") from None
    if name not in config["backbones"]:
        raise DataError(f"{config['_source']}: backbone {name!r} has no [backbones.{name}] table")
    t = section(config, f"backbones.{name}")
    t.values = {"weights": "none", "center_crop": 1.0, **t.values}
    weights = t.string("weights")
    if weights not in ("none", "imagenet") and not Path(weights).is_file():
        raise DataError(f"{t.source}: weights = {weights!r}, expected 'imagenet', 'none' or an existing weights file")
    return BackboneSpec(name, t.integer("input_size", 32, 2048), weights, t.number("center_crop", 0.2, 1))


def augment_settings(t: Table) -> Augment:
    lo, hi = t.number_range("jpeg_quality", 1, 100, integers=True)
    return Augment(flip=t.boolean("flip"), brightness=t.fraction("brightness"), contrast=t.fraction("contrast"),
                   jpeg_quality=(int(lo), int(hi)), jpeg_rate=t.fraction("jpeg_rate"), crop=t.fraction("crop"))


def train_settings(t: Table, augment: Augment, folds: int) -> TrainSettings:
    return TrainSettings(
        faces=t.choice("faces", ("first", "all")), frames_per_video=t.integer("frames_per_video", 0),
        val_fold=t.integer("val_fold", 0, folds - 1), epochs=t.integer("epochs", 1, 100_000),
        patience=t.integer("patience", 1), monitor=t.choice("monitor", tuple(MONITORS)),
        batch_size=t.integer("batch_size", 1), learning_rate=t.number("learning_rate", 0, 1, True, True),
        lr_schedule=t.choice("lr_schedule", ("cosine", "constant")), dropout=t.number("dropout", 0, 1, False, True),
        class_weight=t.choice("class_weight", ("balanced", "none")),
        augment=augment if t.boolean("augment") else None, cache_mb=t.integer("cache_mb", 0),
        processes=t.integer("processes", 1, 64))


def load_settings(config: dict) -> ExtractSettings:
    t = section(config, "extract")
    train = train_settings(section(config, "extract.train"), augment_settings(section(config, "extract.augment")),
                           section(config, "splits").integer("folds", 2, MAX_FOLDS))
    return ExtractSettings(
        backbones=tuple(backbone_spec(config, n) for n in t.strings("backbones")),
        batch_size=t.integer("batch_size", 1),
        chunk_videos=t.integer("chunk_videos", 1), embedding_dtype=t.choice("embedding_dtype", ("float32", "float16")),
        mixed_precision=t.choice("mixed_precision", ("auto", "on", "off")),
        intra_op_threads=t.integer("intra_op_threads", 0), inter_op_threads=t.integer("inter_op_threads", 0),
        train=train, seed=seed(config))
