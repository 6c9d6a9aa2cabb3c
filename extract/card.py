"""The model card, ``models/<NAME>/<backbone>.json``, that ``extract train`` writes beside each trained backbone
(``<backbone>.keras``), and the one reader of both files' checks. Without TensorFlow, so that a refusal is quick.

The card says how the model sees a crop (``input_size``, ``center_crop``, ``weights``): every later use of the
model (``extract features``, the application layer ``apply``) reads that view from here, never from a config.
The rest records how it was trained: ``run_key`` (what makes a rerun up to date), the config, the training data's
fingerprint and counts, epochs, the monitored metric and each epoch's validation figures, versions and the CPU's
thread pools.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass, fields
from pathlib import Path

from common.errors import DataError
from common.schema import read_json_object

MODEL_SUFFIX = ".keras"
CARD_SUFFIX = ".json"


def model_path(models_dir: Path, backbone: str) -> Path:
    return models_dir / f"{backbone}{MODEL_SUFFIX}"


def card_path(models_dir: Path, backbone: str) -> Path:
    return models_dir / f"{backbone}{CARD_SUFFIX}"


def _integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class ModelCard:
    """A trained backbone's card; :meth:`to_json` is the file's content (``common.atomic.write_json``)."""

    backbone: str
    run_key: str
    input_size: int               # the square side, in pixels, a crop is resized to
    center_crop: float            # the central share of the crop kept before resizing, in (0, 1]
    weights: str                  # "none", "imagenet" or the weights file the model started from
    model_file: str
    config: dict                  # {"extract": ..., "backbone": ..., "seed": ...}
    data: dict                    # fingerprint and counts of the training and validation crops
    epochs_run: int
    best_epoch: int
    monitor: str
    val: dict                     # the kept epoch's validation frame metrics
    history: list                 # one object per epoch
    train_seconds: float
    tensorflow: str
    keras: str
    cpu: dict                     # cores, thread pools and oneDNN settings

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, obj: dict, path: Path, hint: str) -> ModelCard:
        """The card in ``obj`` (read from ``path``), checked: a one-line error naming the file and the entry, and
        ending with ``hint`` (how to write a good one)."""
        kinds = {"backbone": str, "run_key": str, "weights": str, "model_file": str, "config": dict, "data": dict,
                 "monitor": str, "val": dict, "history": list, "tensorflow": str, "keras": str, "cpu": dict}
        for f in fields(cls):
            if f.name not in obj:
                raise DataError(f"{path}: no {f.name!r} entry: not a model card; {hint}")
            if f.name in kinds and not isinstance(obj[f.name], kinds[f.name]):
                raise DataError(f"{path}: {f.name} = {obj[f.name]!r}, expected a {kinds[f.name].__name__}: not a "
                                f"model card; {hint}")
        size, crop = obj["input_size"], obj["center_crop"]
        if not _integer(size) or size < 1 or not _number(crop) or not 0 < crop <= 1:
            raise DataError(f"{path}: input_size = {size!r}, center_crop = {crop!r}: not a model card; {hint}")
        for name in ("epochs_run", "best_epoch"):
            if not _integer(obj[name]) or obj[name] < 0:
                raise DataError(f"{path}: {name} = {obj[name]!r}, expected a count: not a model card; {hint}")
        if not _number(obj["train_seconds"]):
            raise DataError(f"{path}: train_seconds = {obj['train_seconds']!r}: not a model card; {hint}")
        return cls(**{f.name: obj[f.name] for f in fields(cls)})

    @classmethod
    def read(cls, path: Path, hint: str) -> ModelCard:
        return cls.from_json(read_json_object(path, hint), path, hint)


def check_model_file(path: Path, hint: str = "") -> Path:
    """``path`` when it is a whole ``.keras`` archive (every member's CRC checked, ``config.json`` inside),
    without TensorFlow; else a one-line error. Loading it is ``extract.backbones.load_keras``'s job."""
    if not path.exists():
        raise DataError(f"{path}: model not found{'; ' + hint if hint else ''}")
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
            names = set(archive.namelist())
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise DataError(f"{path}: not a .keras model file (not a whole zip archive: {e})") from None
    if damaged is not None or "config.json" not in names:
        raise DataError(f"{path}: not a .keras model file ("
                        f"{f'damaged member {damaged}' if damaged else 'no config.json inside'})")
    return path
