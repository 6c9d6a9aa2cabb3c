"""The ``[extract]``, ``[extract.train]``, ``[extract.augment]`` and ``[backbones.*]`` config tables, checked."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from data.config import choice, fraction, number_range, positive_int, section
from data.errors import DataError

from .backbones import get_backbone
from .pipeline import Augment, View


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
    batch_size: int
    learning_rate: float
    lr_schedule: str
    dropout: float
    class_weight: str
    augment: Augment | None
    cache_mb: int


@dataclass(frozen=True)
class ExtractSettings:
    backbones: tuple[BackboneSpec, ...]
    batch_size: int
    chunk_videos: int
    mixed_precision: str
    intra_op_threads: int
    inter_op_threads: int
    train: TrainSettings
    seed: int

    def as_dict(self) -> dict:
        return asdict(self)


def backbone_spec(config: dict, name: str) -> BackboneSpec:
    get_backbone(name)
    tables = config.get("backbones", {})
    if name not in tables:
        raise DataError(f"{config['_source']}: backbone {name!r} has no [backbones.{name}] table")
    t = {**tables[name], "_source": f"{config['_source']} [backbones.{name}]"}
    weights = t.get("weights", "none")
    if not isinstance(weights, str) or not weights:
        raise DataError(f"{t['_source']}: weights must be 'imagenet', 'none' or a file path")
    crop = t.get("center_crop", 1.0)
    if not isinstance(crop, (int, float)) or not 0.2 <= crop <= 1:
        raise DataError(f"{t['_source']}: center_crop = {crop!r}, expected a number in [0.2, 1]")
    return BackboneSpec(name, positive_int(t, "input_size", 32), weights, float(crop))


def load_settings(config: dict) -> ExtractSettings:
    t = section(config, "extract")
    tr = {**config["extract"]["train"], "_source": f"{config['_source']} [extract.train]"}
    au = {**config["extract"]["augment"], "_source": f"{config['_source']} [extract.augment]"}
    names = t["backbones"]
    if not isinstance(names, list) or not names or len(set(names)) != len(names):
        raise DataError(f"{t['_source']}: backbones must be a non-empty list of distinct registry names")
    lo, hi = number_range(au, "jpeg_quality")
    augment = Augment(flip=bool(au["flip"]), brightness=fraction(au, "brightness"), contrast=fraction(au, "contrast"),
                      jpeg_quality=(int(lo), int(hi)), jpeg_rate=fraction(au, "jpeg_rate"), crop=fraction(au, "crop"))
    lr = tr["learning_rate"]
    if not isinstance(lr, (int, float)) or not 0 < lr < 1:
        raise DataError(f"{tr['_source']}: learning_rate = {lr!r}, expected a number in (0, 1)")
    train = TrainSettings(
        faces=choice(tr, "faces", ("first", "all")), frames_per_video=positive_int(tr, "frames_per_video", 0),
        val_fold=positive_int(tr, "val_fold", 0), epochs=positive_int(tr, "epochs"),
        patience=positive_int(tr, "patience"), batch_size=positive_int(tr, "batch_size"),
        learning_rate=float(lr), lr_schedule=choice(tr, "lr_schedule", ("cosine", "constant")),
        dropout=fraction(tr, "dropout"),
        class_weight=choice(tr, "class_weight", ("balanced", "none")),
        augment=augment if tr["augment"] else None, cache_mb=positive_int(tr, "cache_mb", 0))
    return ExtractSettings(
        backbones=tuple(backbone_spec(config, n) for n in names), batch_size=positive_int(t, "batch_size"),
        chunk_videos=positive_int(t, "chunk_videos"), mixed_precision=choice(t, "mixed_precision", ("auto", "on", "off")),
        intra_op_threads=positive_int(t, "intra_op_threads", 0), inter_op_threads=positive_int(t, "inter_op_threads", 0),
        train=train, seed=int(config["seed"]))
