"""The saved ensemble, ``models/<NAME>/ensemble/``: written by ``ensemble fit``, applied to new videos by
``evaluate predict``. Everything is JSON or LightGBM text, read back without pickle or code execution.

Files: ``ensemble.json`` (backbones, rules, prior, PCA, best method), ``training_videos.json`` (the blend
split's videos: ``data.training_videos``), then per learned method ``<a>_<b>.json``
(the combiner's parameters and its calibrator) and, for LightGBM, ``<a>_<b>.txt`` (the trees). The plain mean
(``blend_mean.json``) has only a calibrator.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from common.atomic import atomic_dir, write_json, write_text
from common.errors import DataError
from data.training_videos import RECORD_FILE

from .calibration import Calibrator
from .rules import Rule
from .stackers import KINDS, Average, LightGBMStack, LogisticStack, WeightedBlend
from .video_features import (
    fill_rules,
    has_frames,
    plain_mean,
    rule_columns,
    video_table,
)

META_FILE = "ensemble.json"


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number a saved model may hold")


def read_strict_json(path: Path):
    """JSON without NaN or Infinity (Python's json would accept them), so a damaged weight never predicts NaN."""
    return json.loads(path.read_text(), parse_constant=_refuse_constant)


def write_ensemble(folder: Path, saved: dict, meta: dict, record: dict | None = None) -> None:
    """Replace ``folder`` whole with ``saved`` ({method: (combiner or None, calibrator)}), ``meta`` and the record
    of the videos the combiners learned from (``data.training_videos``)."""
    with atomic_dir(folder) as tmp:
        if record is not None:
            write_json(tmp / RECORD_FILE, record)
        for name, (model, calibrator) in saved.items():
            stem = name.replace("/", "_")
            obj = {**(model.to_json() if model else {}), "calibrator": calibrator.to_json()}
            if isinstance(model, LightGBMStack):
                text = model.model_text()
                write_text(tmp / f"{stem}.txt", text)
                obj["text_sha256"] = hashlib.sha256(text.encode()).hexdigest()
            write_json(tmp / f"{stem}.json", obj)
        write_json(tmp / META_FILE, meta)


def load_stacker(path: Path, _seen: tuple[str, ...] = ()):
    """A saved combiner and its calibrator, read from JSON or LightGBM text: no pickle, no code execution.
    The plain mean (``blend_mean``) has only a calibrator: the model is None. An average loads its members, and
    an alias (the chosen method) the method it names, from the same folder."""
    json_file, text_file = path.with_suffix(".json"), path.with_suffix(".txt")
    try:
        obj = read_strict_json(json_file)
        calibrator = Calibrator.from_json(obj["calibrator"])
        kind = obj.get("kind")
        if kind in ("alias", "average"):
            names = [obj["method"]] if kind == "alias" else list(obj["members"])
            for name in names:
                if not isinstance(name, str) or name.count("/") != 1 or \
                        name.replace("/", "_") in (*_seen, path.stem):
                    raise ValueError(f"{kind} of {name!r}: not another saved method")
            loaded = [load_stacker(path.with_name(n.replace("/", "_")), (*_seen, path.stem)) for n in names]
            if kind == "alias":
                return loaded[0]
            if obj["space"] not in ("probability", "logit"):
                raise ValueError(f"average space {obj['space']!r}")
            return Average([m for m, _ in loaded], obj["space"], names), calibrator
        if text_file.exists():
            return LightGBMStack.from_text(_lightgbm_text(text_file, obj), obj), calibrator
        if kind in KINDS:
            return KINDS[kind].from_json(obj), calibrator
        if "weights" in obj:                 # saved before combiners named their kind
            return WeightedBlend.from_json(obj), calibrator
        if "coef" in obj:
            return LogisticStack.from_json(obj), calibrator
        return None, calibrator
    except DataError:
        raise
    except (OSError, ValueError, KeyError, TypeError, lgb.basic.LightGBMError) as e:   # JSONDecodeError included
        raise DataError(f"{json_file}: not a saved combiner ({type(e).__name__}: {str(e).splitlines()[0][:160]})"
                        ) from None


def _lightgbm_text(path: Path, obj: dict) -> str:
    """The trees, checked before LightGBM parses them: LightGBM's parser can crash the process on a truncated
    model, so the text must match the hash saved beside it (or, without one, hold LightGBM's end markers)."""
    text = path.read_text()
    digest = obj.get("text_sha256")
    if digest is not None and hashlib.sha256(text.encode()).hexdigest() != digest:
        raise ValueError(f"{path.name} does not match the hash saved with it (damaged or replaced)")
    if "\nend of trees\n" not in text or "\nend of parameters\n" not in text:
        raise ValueError(f"{path.name} is not a whole LightGBM model text")
    return text


class SavedEnsemble:
    """The combiners ``ensemble fit`` saved in ``models/<NAME>/ensemble/``, applied to new videos' features."""

    def __init__(self, folder: Path):
        path = folder / META_FILE
        if not path.exists():
            raise DataError(f"{path}: not found; run 'make ensemble' (python -m ensemble fit) first")
        try:
            meta = read_strict_json(path)
            self.backbones, self.prior = list(meta["backbones"]), float(meta["prior"])
            self.rules = [Rule.parse(r, f"{path}: rules") for r in meta["rules"]]
            self.pcas, self.best_method = meta["pca"], meta["best_method"]
            if len(set(self.backbones)) != len(self.backbones) or not all(isinstance(b, str) for b in self.backbones):
                raise ValueError("backbones must be distinct names")
            if not 0 <= self.prior <= 1:
                raise ValueError(f"prior {self.prior} is not a probability")
            for b, pca in self.pcas.items():
                center, components = np.asarray(pca["mean"], np.float64), np.asarray(pca["components"], np.float64)
                if center.ndim != 1 or components.ndim != 2 or components.shape[1] != len(center):
                    raise ValueError(f"PCA of {b} has shapes {center.shape} and {components.shape}")
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
            raise DataError(f"{path}: not a saved ensemble ({type(e).__name__}: {e})") from None
        self.folder = folder

    def methods(self) -> list[str]:
        saved = [p.stem.replace("_", "/", 1) for p in sorted(self.folder.glob("*.json"))
                 if p.name not in (META_FILE, RECORD_FILE)]
        return rule_columns(self.backbones, self.rules) + saved

    def predict(self, names: list[str], frames: dict, method: str) -> np.ndarray:
        """(len(names),) P(FAKE) of each video by ``method``; ``frames``: {backbone: (frame table, embeddings)}."""
        return self.predict_many(names, frames, [method])[method].to_numpy()

    def predict_many(self, names: list[str], frames: dict, methods: list[str]) -> pd.DataFrame:
        """P(FAKE) of each video of ``names`` by each of ``methods``: a table (len(names), len(methods)), the
        video features computed once. ``frames``: {backbone: (frame table (n rows: video, frame, face, score),
        embeddings (n, D))}; a video without a frame in any backbone gets the prior."""
        missing = [m for m in methods if m not in self.methods()]
        if missing:
            raise DataError(f"{self.folder}: no method {missing[0]!r} (have: {', '.join(self.methods())})")
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
