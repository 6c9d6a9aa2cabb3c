"""The saved ensemble, ``models/<NAME>/ensemble/``: written by ``ensemble fit``, applied to new videos by
``evaluate predict``. Everything is JSON or LightGBM text, read back without pickle or code execution.

Files: ``ensemble.json`` (:class:`EnsembleMeta`: backbones, rules, prior, PCA, best method),
``training_videos.json`` (the blend split's videos: ``data.training_videos``), then per method ``<a>_<b>.json``:
the combiner's ``kind``, its parameters and its calibrator, and for LightGBM ``<a>_<b>.txt`` (the trees). Every
combiner file names its kind, read back through one registry (:data:`READERS`): the learned combiners of
``ensemble.stackers``, ``lightgbm``, ``average`` (of other saved methods), ``alias`` (the chosen method, another
saved method under a second name) and ``plain_mean`` (``blend/mean``: nothing learned, only a calibrator).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from common.atomic import atomic_dir, write_json, write_text
from common.errors import DataError
from data.training_videos import RECORD_FILE

from .calibration import Calibrator
from .rules import Rule
from .stackers import KINDS, Alias, Average, LightGBMStack
from .video_features import (
    fill_rules,
    has_frames,
    plain_mean,
    rule_columns,
    video_table,
)

META_FILE = "ensemble.json"
PLAIN_MEAN_KIND = "plain_mean"   # the saved ``blend/mean``: the plain mean of the mean rules, calibrated


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number a saved model may hold")


def read_strict_json(path: Path):
    """JSON without NaN or Infinity (Python's json would accept them), so a damaged weight never predicts NaN."""
    return json.loads(path.read_text(), parse_constant=_refuse_constant)


@dataclass(frozen=True)
class EnsembleMeta:
    """``ensemble.json``: what applying the saved combiners to new videos needs besides them."""

    backbones: tuple[str, ...]
    rules: tuple[Rule, ...]
    prior: float                       # the blend split's FAKE share: the prediction of a video without a face
    pca: dict                          # {backbone: {"mean": (D,), "components": (k, D)} lists}; {} when off
    best_method: str

    def to_json(self) -> dict:
        return {"rules": [r.label for r in self.rules], "backbones": list(self.backbones), "prior": self.prior,
                "pca": self.pca, "best_method": self.best_method}

    @classmethod
    def read(cls, path: Path) -> EnsembleMeta:
        """The checked record; anything else is one line naming the file."""
        if not path.exists():
            raise DataError(f"{path}: not found; run 'make ensemble' (python -m ensemble fit) first")
        try:
            obj = read_strict_json(path)
            backbones, prior = obj["backbones"], float(obj["prior"])
            if not isinstance(backbones, list) or len(set(backbones)) != len(backbones) or \
                    not all(isinstance(b, str) for b in backbones):
                raise ValueError("backbones must be distinct names")
            if not 0 <= prior <= 1:
                raise ValueError(f"prior {prior} is not a probability")
            for b, pca in obj["pca"].items():
                center, components = np.asarray(pca["mean"], np.float64), np.asarray(pca["components"], np.float64)
                if center.ndim != 1 or components.ndim != 2 or components.shape[1] != len(center):
                    raise ValueError(f"PCA of {b} has shapes {center.shape} and {components.shape}")
            if not isinstance(obj["best_method"], str):
                raise ValueError(f"best_method {obj['best_method']!r} is not a method name")
            return cls(tuple(backbones), tuple(Rule.parse(r, f"{path}: rules") for r in obj["rules"]), prior,
                       obj["pca"], obj["best_method"])
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
            raise DataError(f"{path}: not a saved ensemble ({type(e).__name__}: {e})") from None


def combiner_json(model, calibrator: Calibrator) -> dict:
    """The JSON of one saved method: its kind and parameters (``model`` None: the plain mean) and calibrator."""
    return {**(model.to_json() if model is not None else {"kind": PLAIN_MEAN_KIND}),
            "calibrator": calibrator.to_json()}


def write_ensemble(folder: Path, saved: dict, meta: EnsembleMeta, record: dict | None = None) -> None:
    """Replace ``folder`` whole with ``saved`` ({method: (combiner or None, calibrator)}), ``meta`` and the record
    of the videos the combiners learned from (``data.training_videos``)."""
    with atomic_dir(folder) as tmp:
        if record is not None:
            write_json(tmp / RECORD_FILE, record)
        for name, (model, calibrator) in saved.items():
            stem = name.replace("/", "_")
            obj = combiner_json(model, calibrator)
            if isinstance(model, LightGBMStack):
                text = model.model_text()
                write_text(tmp / f"{stem}.txt", text)
                obj["text_sha256"] = hashlib.sha256(text.encode()).hexdigest()
            write_json(tmp / f"{stem}.json", obj)
        write_json(tmp / META_FILE, meta.to_json())


Reader = Callable[[dict, Path, tuple], tuple]


def _own(read_model: Callable[[dict, Path], object]) -> Reader:
    """A reader of a method saved whole in its own files: (its model, its calibrator)."""
    return lambda obj, path, seen: (read_model(obj, path), Calibrator.from_json(obj["calibrator"]))


def _others(obj: dict, path: Path, seen: tuple[str, ...], names: list) -> list[tuple]:
    """The saved methods ``names`` that an alias or average refers to, loaded from the same folder."""
    for name in names:
        if not isinstance(name, str) or name.count("/") != 1 or name.replace("/", "_") in (*seen, path.stem):
            raise ValueError(f"{obj['kind']} of {name!r}: not another saved method")
    return [load_stacker(path.with_name(n.replace("/", "_")), (*seen, path.stem)) for n in names]


def _alias(obj: dict, path: Path, seen: tuple[str, ...]) -> tuple:
    return _others(obj, path, seen, [obj["method"]])[0]


def _average(obj: dict, path: Path, seen: tuple[str, ...]) -> tuple:
    names = list(obj["members"])
    if obj["space"] not in ("probability", "logit"):
        raise ValueError(f"average space {obj['space']!r}")
    members = [m for m, _ in _others(obj, path, seen, names)]
    return Average(members, obj["space"], names), Calibrator.from_json(obj["calibrator"])


def _lightgbm(obj: dict, path: Path) -> LightGBMStack:
    return LightGBMStack.from_text(_lightgbm_text(path.with_suffix(".txt"), obj), obj)


# the "kind" of a saved method -> its reader: (the JSON, the file's path without suffix, the methods being
# loaded that referred to it) -> (combiner or None, calibrator)
READERS: dict[str, Reader] = {
    **{kind: _own(lambda obj, path, cls=cls: cls.from_json(obj)) for kind, cls in KINDS.items()},
    LightGBMStack.kind: _own(_lightgbm),
    Average.kind: _average,
    Alias.kind: _alias,
    PLAIN_MEAN_KIND: _own(lambda obj, path: None),
}


def load_stacker(path: Path, _seen: tuple[str, ...] = ()):
    """A saved method's combiner (None for the plain mean) and its calibrator, read from ``<path>.json`` (and
    LightGBM text) through the reader of the kind it names: no pickle, no code execution. An average loads its
    members, and an alias (the chosen method) the method it names, from the same folder."""
    json_file = path.with_suffix(".json")
    try:
        obj = read_strict_json(json_file)
        kind = obj["kind"]
        if kind not in READERS:
            raise ValueError(f"unknown kind {kind!r} (known: {', '.join(READERS)})")
        return READERS[kind](obj, path, _seen)
    except DataError:
        raise
    except (OSError, ValueError, KeyError, TypeError, lgb.basic.LightGBMError) as e:   # JSONDecodeError included
        raise DataError(f"{json_file}: not a saved combiner ({type(e).__name__}: {str(e).splitlines()[0][:160]})"
                        ) from None


def _lightgbm_text(path: Path, obj: dict) -> str:
    """The trees, checked before LightGBM parses them: LightGBM's parser can crash the process on a truncated
    model, so the text must match the hash saved beside it and hold LightGBM's end markers."""
    text = path.read_text()
    if hashlib.sha256(text.encode()).hexdigest() != obj["text_sha256"]:
        raise ValueError(f"{path.name} does not match the hash saved with it (damaged or replaced)")
    if "\nend of trees\n" not in text or "\nend of parameters\n" not in text:
        raise ValueError(f"{path.name} is not a whole LightGBM model text")
    return text


class SavedEnsemble:
    """The combiners ``ensemble fit`` saved in ``models/<NAME>/ensemble/``, applied to new videos' features."""

    def __init__(self, folder: Path):
        self.meta = EnsembleMeta.read(folder / META_FILE)
        self.backbones, self.rules = list(self.meta.backbones), list(self.meta.rules)
        self.prior, self.pcas, self.best_method = self.meta.prior, self.meta.pca, self.meta.best_method
        self.folder = folder

    def methods(self) -> list[str]:
        saved = [p.stem.replace("_", "/", 1) for p in sorted(self.folder.glob("*.json"))
                 if p.name not in (META_FILE, RECORD_FILE)]
        return rule_columns(self.backbones, self.rules) + saved

    def predict(self, names: list[str], frames: dict, method: str) -> np.ndarray:
        """(len(names),) P(FAKE) of each video by ``method``; ``frames``: {backbone: (frame table, embeddings)}."""
        return self.predict_many(names, frames, [method])[method].to_numpy()

    def check_methods(self, methods: list[str]) -> None:
        """A one-line error for the first of ``methods`` this ensemble does not hold."""
        have = self.methods()
        missing = [m for m in methods if m not in have]
        if missing:
            raise DataError(f"{self.folder}: no method {missing[0]!r} (have: {', '.join(have)})")

    def predict_many(self, names: list[str], frames: dict, methods: list[str]) -> pd.DataFrame:
        """P(FAKE) of each video of ``names`` by each of ``methods``: a table (len(names), len(methods)), the
        video features computed once. ``frames``: {backbone: (frame table (n rows: video, frame, face, score),
        embeddings (n, D))}; a video without a frame in any backbone gets the prior."""
        self.check_methods(methods)
        rule_cols = rule_columns(self.backbones, self.rules)
        mine = {}
        for b in self.backbones:
            if b not in frames:
                raise DataError(f"{self.folder}: the ensemble needs frame scores of backbone {b!r}")
            table, emb = frames[b]
            keep = table["video"].isin(names).to_numpy()
            mine[b] = (table[keep].reset_index(drop=True), emb[keep])
        out = {}
        try:
            X = fill_rules(video_table(names, mine, self.rules, self.pcas), rule_cols, self.prior)
            seen = has_frames(X, self.backbones)
            for method in methods:
                if method in rule_cols:
                    pred = X[method].to_numpy(np.float64)
                else:
                    model, calibrator = load_stacker(self.folder / method.replace("/", "_"))
                    raw = plain_mean(X, self.backbones) if model is None else model.predict_proba(X)[:, 1]
                    pred = calibrator.transform(raw)
                out[method] = np.where(seen, pred, self.prior)
        except (ValueError, KeyError, TypeError, IndexError) as e:   # shapes or columns of a damaged model
            raise DataError(f"{self.folder}: the saved ensemble does not fit these features ({type(e).__name__}: "
                            f"{str(e).splitlines()[0][:160]}); refit it with 'make ensemble'") from None
        for method, pred in out.items():
            if not np.isfinite(pred).all():
                raise DataError(f"{self.folder}: {method} predicts NaN; refit the ensemble with 'make ensemble'")
        return pd.DataFrame(out, index=pd.RangeIndex(len(names)))
