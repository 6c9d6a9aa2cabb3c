"""The JSON records the ensemble stage writes beside its tables, each defined once: ``fit.json`` (``ensemble
fit``), ``protocols.json`` (``ensemble protocols``), and the method names they hold.

The writers build a record and save its ``to_json``; every reader (``evaluate`` included) goes through ``read``,
which checks each entry: a damaged record is one line naming the file and the entry. This module holds no
fitting code, so a reader does not load LightGBM.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from common.atomic import write_json
from common.errors import DataError
from common.schema import read_json_object

FIT_FILE = "fit.json"
PROTOCOLS_FILE = "protocols.json"
PLAIN_MEAN = "blend/mean"        # the mean of each backbone's mean rule: nothing learned (the reference)
CHOSEN = "stack/chosen"          # the chosen method; on the blend split, the nested OOF predictions of the choice
FULL = "none"                    # the ``without`` value of the full ensemble in the ablation (no backbone is named so)
FIT_HINT = "run 'make ensemble' (python -m ensemble fit) again"
PROTOCOLS_HINT = "run 'python -m ensemble protocols' (make report) first"


class _Bad(Exception):
    """An entry of a record that is not what it must be: (key, value, what was expected)."""


def _fail(key: str, value, expected: str):
    raise _Bad(key, value, expected)


def _real(value, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(key, value, "a number")
    return float(value)


def _finite(value, key: str) -> float:
    if not math.isfinite(_real(value, key)):
        _fail(key, value, "a finite number")
    return float(value)


def _text(value, key: str) -> str:
    if not isinstance(value, str) or not value:
        _fail(key, value, "a non-empty text")
    return value


def _object(value, key: str, expected: str = "an object") -> dict:
    if not isinstance(value, dict):
        _fail(key, value, expected)
    return value


def _names(value, key: str, distinct: bool = False) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value) or \
            (distinct and len(set(value)) != len(value)):
        _fail(key, value, f"a non-empty list of {'distinct ' if distinct else ''}names")
    return tuple(value)


def _read(cls, path: Path, hint: str):
    """``cls.from_json`` of the JSON object in ``path``; a bad entry is one line naming the file and the entry."""
    obj = read_json_object(path, hint)
    try:
        return cls.from_json(obj)
    except _Bad as e:
        key, value, expected = e.args
        raise DataError(f"{path}: {key} = {value!r}, expected {expected}; {hint}") from None


# --- fit.json ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MethodFit:
    """One method of ``fit.json``: its OOF log-loss before and after calibration, and the calibrator chosen."""

    reference: bool                    # scored and calibrated for comparison, never chosen
    oof_log_loss_raw: float
    calibrators: dict                  # {calibrator name: cross-fitted log-loss}
    calibrator: str                    # the one chosen
    oof_log_loss: float                # of the calibrated OOF predictions

    def to_json(self) -> dict:
        return {"reference": self.reference, "oof_log_loss_raw": self.oof_log_loss_raw,
                "calibrators": self.calibrators, "calibrator": self.calibrator, "oof_log_loss": self.oof_log_loss}

    @classmethod
    def from_json(cls, obj, key: str) -> MethodFit:
        obj = _object(obj, key)
        if not isinstance(obj.get("reference"), bool):
            _fail(f"{key}.reference", obj.get("reference"), "true or false")
        scores = _object(obj.get("calibrators"), f"{key}.calibrators")
        return cls(obj["reference"], _real(obj.get("oof_log_loss_raw"), f"{key}.oof_log_loss_raw"),
                   {_text(k, f"{key}.calibrators"): _real(v, f"{key}.calibrators.{k}") for k, v in scores.items()},
                   _text(obj.get("calibrator"), f"{key}.calibrator"),
                   _finite(obj.get("oof_log_loss"), f"{key}.oof_log_loss"))


@dataclass(frozen=True)
class Choice:
    """The method chosen on the blend split's OOF log-loss and, with the nested choice, the nested OOF log-loss
    of the whole choice and the method each outer fold chose."""

    method: str
    oof_log_loss: float
    nested_oof_log_loss: float | None = None
    chosen_per_fold: tuple[str, ...] | None = None

    def to_json(self) -> dict:
        out = {"method": self.method, "oof_log_loss": self.oof_log_loss}
        if self.nested_oof_log_loss is not None:
            out.update(nested_oof_log_loss=self.nested_oof_log_loss, chosen_per_fold=list(self.chosen_per_fold))
        return out

    @classmethod
    def from_json(cls, obj) -> Choice:
        obj = _object(obj, "chosen")
        method, loss = _text(obj.get("method"), "chosen.method"), _finite(obj.get("oof_log_loss"), "chosen.oof_log_loss")
        if "nested_oof_log_loss" not in obj:
            return cls(method, loss)
        return cls(method, loss, _finite(obj["nested_oof_log_loss"], "chosen.nested_oof_log_loss"),
                   _names(obj.get("chosen_per_fold"), "chosen.chosen_per_fold"))


@dataclass(frozen=True)
class FitRecord:
    """``fit.json``, beside the predictions table: the blend split's FAKE share (the prior), each method's OOF
    figures, the choice, and ``best_method``, the column submitted (``stack/chosen`` with the nested choice)."""

    prior: float
    methods: dict                      # {method: MethodFit}, in the order they were fitted
    best_method: str
    chosen: Choice

    def to_json(self) -> dict:
        return {"prior": self.prior, "methods": {m: r.to_json() for m, r in self.methods.items()},
                "best_method": self.best_method, "chosen": self.chosen.to_json()}

    @classmethod
    def from_json(cls, obj: dict) -> FitRecord:
        prior = _real(obj.get("prior"), "prior")
        if not 0 <= prior <= 1:
            _fail("prior", obj.get("prior"), "a probability in [0, 1]")
        methods = _object(obj.get("methods"), "methods")
        return cls(prior, {_text(m, "methods"): MethodFit.from_json(r, f"methods.{m}") for m, r in methods.items()},
                   _text(obj.get("best_method"), "best_method"), Choice.from_json(obj.get("chosen")))

    @classmethod
    def read(cls, path: Path) -> FitRecord:
        return _read(cls, path, FIT_HINT)

    def write(self, path: Path) -> None:
        write_json(path, self.to_json())


# --- protocols.json ------------------------------------------------------------------------------------------

def _budget(value, key: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        _fail(key, value, "an integer >= 0")
    return value


def _per_budget(obj: dict, key: str, budgets: tuple[int, ...], check) -> dict:
    """{budget: value} from ``obj[key]``, an object keyed by each budget as text."""
    table = _object(obj.get(key), f"frame_budget.{key}", "an object with an entry per budget")
    return {k: check(table.get(str(k)), f"frame_budget.{key}.{k}") for k in budgets}


def _frames_per_s(value, key: str) -> float | None:
    return None if value is None else _finite(value, key)


def _crops(value, key: str) -> dict:
    crops = _object(value, key, "an object of crops per backbone")
    return {b: _finite(c, f"{key}.{b}") for b, c in crops.items()}


@dataclass(frozen=True)
class FrameBudgetRecord:
    """The frame-budget protocol: per budget (0 = every cached crop) the method chosen, the crops per video of
    each backbone and the CNN seconds per video (None without every backbone's measured frames/s)."""

    budgets: tuple[int, ...]           # in the order fitted; 0 last
    most_frames: int                   # the most frames a video has
    chosen: dict                       # {budget: method}
    crops_per_video: dict              # {budget: {backbone: crops}}
    frames_per_s: dict                 # {backbone: frames/s or None}
    seconds_per_video: dict            # {budget: seconds or None}
    learned: tuple[str, ...]           # the learned methods' columns, ``stack/chosen`` last

    def to_json(self) -> dict:
        return {"budgets": list(self.budgets), "most_frames": self.most_frames,
                "chosen": {str(k): v for k, v in self.chosen.items()},
                "crops_per_video": {str(k): v for k, v in self.crops_per_video.items()},
                "frames_per_s": self.frames_per_s,
                "seconds_per_video": {str(k): v for k, v in self.seconds_per_video.items()},
                "learned": list(self.learned)}

    @classmethod
    def from_json(cls, obj) -> FrameBudgetRecord:
        obj = _object(obj, "frame_budget")
        budgets = obj.get("budgets")
        if not isinstance(budgets, list) or 0 not in budgets or len(set(budgets)) != len(budgets) or \
                not all(isinstance(k, int) and not isinstance(k, bool) and k >= 0 for k in budgets):
            _fail("frame_budget.budgets", budgets, "a list of distinct frame counts >= 0 with 0 (every crop)")
        budgets = tuple(budgets)
        fps = _object(obj.get("frames_per_s"), "frame_budget.frames_per_s",
                      "an object of frames/s (or null) per backbone")
        return cls(budgets, _budget(obj.get("most_frames"), "frame_budget.most_frames"),
                   _per_budget(obj, "chosen", budgets, _text), _per_budget(obj, "crops_per_video", budgets, _crops),
                   {b: _frames_per_s(v, f"frame_budget.frames_per_s.{b}") for b, v in fps.items()},
                   _per_budget(obj, "seconds_per_video", budgets, _frames_per_s),
                   _names(obj.get("learned"), "frame_budget.learned"))


@dataclass(frozen=True)
class AblationRecord:
    """The backbone ablation: the method chosen with every backbone (``FULL``) and without each one."""

    backbones: tuple[str, ...]
    chosen: dict                       # {FULL or backbone: method}
    learned: tuple[str, ...]

    def to_json(self) -> dict:
        return {"backbones": list(self.backbones), "chosen": self.chosen, "learned": list(self.learned)}

    @classmethod
    def from_json(cls, obj) -> AblationRecord:
        obj = _object(obj, "ablation", "an object, or null without an ablation")
        backbones = _names(obj.get("backbones"), "ablation.backbones", distinct=True)
        if FULL in backbones:
            _fail("ablation.backbones", list(backbones), f"backbone names other than {FULL!r}")
        chosen = obj.get("chosen")
        if not isinstance(chosen, dict) or not all(isinstance(chosen.get(b), str) for b in (FULL, *backbones)):
            _fail("ablation.chosen", chosen, f"an object naming the chosen method for {FULL} and each backbone")
        return cls(backbones, {b: chosen[b] for b in (FULL, *backbones)},
                   _names(obj.get("learned"), "ablation.learned"))


@dataclass(frozen=True)
class ProtocolsRecord:
    """``protocols.json``, written last by ``ensemble protocols`` beside ``frame_budget.parquet`` and
    ``ablation.parquet``."""

    frame_budget: FrameBudgetRecord
    ablation: AblationRecord | None    # None without an ablation (one backbone, or turned off)

    def to_json(self) -> dict:
        return {"frame_budget": self.frame_budget.to_json(),
                "ablation": None if self.ablation is None else self.ablation.to_json()}

    @classmethod
    def from_json(cls, obj: dict) -> ProtocolsRecord:
        ablation = obj.get("ablation")
        return cls(FrameBudgetRecord.from_json(obj.get("frame_budget")),
                   None if ablation is None else AblationRecord.from_json(ablation))

    @classmethod
    def read(cls, path: Path) -> ProtocolsRecord:
        return _read(cls, path, PROTOCOLS_HINT)

    def write(self, path: Path) -> None:
        write_json(path, self.to_json())
