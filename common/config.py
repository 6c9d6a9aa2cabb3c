"""Configuration: ``configs/default.toml`` overlaid with a user TOML file, read with tomllib.

Every stage reads its tables through :class:`Table`, whose getters check a key's type and range where it is
read; a bad value is one line naming the file, the table and the key, e.g.
``my.toml [ensemble.lightgbm]: num_leaves = 'four', expected an integer in [2, 131072]``.
"""
from __future__ import annotations

import copy
import itertools
import math
import tomllib
from pathlib import Path
from typing import Any

from .errors import DataError

MAX_SEED = 2**32 - 1
MAX_COUNT = 2**31 - 1      # the largest count (rounds, samples, bins) the native libraries take
DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "default.toml"


def _read(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected a TOML config file") from None
    except tomllib.TOMLDecodeError as e:
        raise DataError(f"{path}: invalid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _merge(base: dict, override: dict, path: Path, prefix: str = "") -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        where = f"{prefix}{key}"
        if key not in base:
            raise DataError(f"{path}: unknown config key '{where}'")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise DataError(f"{path}: '{where}' must be a table")
            out[key] = _merge(base[key], value, path, where + ".")
        else:
            out[key] = value
    return out


def load_config(path: str | Path | None = None) -> dict[str, Any]:
    """The default config, overlaid with ``path`` when given. Unknown keys are an error; the master ``seed``
    is checked here because every stage derives its own from it."""
    config = _read(DEFAULT_CONFIG)
    if path is not None and Path(path).resolve() != DEFAULT_CONFIG:
        config = _merge(config, _read(Path(path)), Path(path))
    config["_source"] = str(path or DEFAULT_CONFIG)
    seed(config)
    return config


def offset_seed(config: dict, offset: int | None) -> dict:
    """``config`` with the master seed moved by ``offset`` (modulo 2**32), for another seed of a learned stage
    (``--seed-offset``, ``make report SEEDS=N``); the data and splits stay those already prepared."""
    if not offset:
        return config
    return {**config, "seed": (seed(config) + offset) % (MAX_SEED + 1)}


def seed(config: dict) -> int:
    """The master seed, checked: an integer in [0, 2**32 - 1] (what NumPy, TensorFlow and LightGBM accept)."""
    return Table(config, config["_source"]).integer("seed", 0, MAX_SEED)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class Table:
    """One config table with checked getters. ``source`` names the file and table in error messages."""

    def __init__(self, values: dict, source: str):
        self.values, self.source = values, source

    def _bad(self, key: str, expected: str) -> DataError:
        return DataError(f"{self.source}: {key} = {self.values.get(key)!r}, expected {expected}")

    def raw(self, key: str):
        return self.values[key]

    def integer(self, key: str, minimum: int | None = None, maximum: int | None = None) -> int:
        value = self.values[key]
        ok = isinstance(value, int) and not isinstance(value, bool)
        if not ok or (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            bounds = (f" in [{minimum}, {maximum}]" if maximum is not None else f" >= {minimum}") \
                if minimum is not None else ""
            raise self._bad(key, f"an integer{bounds}")
        return value

    def number(self, key: str, low: float | None = None, high: float | None = None,
               open_low: bool = False, open_high: bool = False) -> float:
        """A finite number in [low, high]; ``open_low`` / ``open_high`` exclude the bound."""
        value = self.values[key]
        if not _in_range(value, low, high, open_low, open_high):
            raise self._bad(key, "a number" + _describe_range(low, high, open_low, open_high))
        return float(value)

    def fraction(self, key: str) -> float:
        return self.number(key, 0, 1)

    def boolean(self, key: str) -> bool:
        value = self.values[key]
        if not isinstance(value, bool):
            raise self._bad(key, "true or false")
        return value

    def string(self, key: str) -> str:
        value = self.values[key]
        if not isinstance(value, str) or not value:
            raise self._bad(key, "a non-empty string")
        return value

    def choice(self, key: str, allowed: tuple[str, ...]) -> str:
        value = self.values[key]
        if value not in allowed:
            raise self._bad(key, f"one of {', '.join(allowed)}")
        return value

    def strings(self, key: str, allowed: tuple[str, ...] | None = None) -> list[str]:
        """A non-empty list of distinct strings (from ``allowed`` when given)."""
        value = self.values[key]
        if (not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value)
                or len(set(value)) != len(value) or (allowed and any(v not in allowed for v in value))):
            raise self._bad(key, "a non-empty list of distinct names" + (f" from {', '.join(allowed)}"
                                                                          if allowed else ""))
        return list(value)

    def integers(self, key: str, minimum: int | None = None, maximum: int | None = None) -> list[int]:
        """A non-empty, strictly increasing list of integers, each in [minimum, maximum]."""
        value = self.values[key]
        ok = isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        if not ok or any(b <= a for a, b in itertools.pairwise(value)) or \
                (minimum is not None and value[0] < minimum) or (maximum is not None and value[-1] > maximum):
            bounds = f" in [{minimum}, {maximum}]" if minimum is not None and maximum is not None else ""
            raise self._bad(key, f"a non-empty increasing list of integers{bounds}")
        return list(value)

    def numbers(self, key: str, low: float | None = None, high: float | None = None,
                open_low: bool = False, open_high: bool = False) -> list[float]:
        """A non-empty list of finite numbers, each in the range."""
        value = self.values[key]
        if not isinstance(value, list) or not value or \
                not all(_in_range(v, low, high, open_low, open_high) for v in value):
            raise self._bad(key, "a non-empty list of numbers" + _describe_range(low, high, open_low, open_high))
        return [float(v) for v in value]

    def number_range(self, key: str, low: float | None = None, high: float | None = None,
                     integers: bool = False) -> tuple[float, float]:
        """``[low, high]`` with low <= high, both within the given bounds (and whole numbers if ``integers``)."""
        value = self.values[key]
        if (not isinstance(value, list) or len(value) != 2 or not all(_in_range(v, low, high) for v in value)
                or value[0] > value[1] or integers and not all(isinstance(v, int) for v in value)):
            raise self._bad(key, f"[low, high] of {'integers' if integers else 'numbers'} with low <= high"
                            + _describe_range(low, high, False, False, prefix=", each"))
        return float(value[0]), float(value[1])


def _in_range(value, low, high, open_low: bool = False, open_high: bool = False) -> bool:
    if not _is_number(value):
        return False
    if low is not None and (value < low or open_low and value == low):
        return False
    return not (high is not None and (value > high or open_high and value == high))


def _describe_range(low, high, open_low: bool, open_high: bool, prefix: str = "") -> str:
    if low is None and high is None:
        return ""
    if high is None:
        return f"{prefix} {'>' if open_low else '>='} {low:g}"
    if low is None:
        return f"{prefix} {'<' if open_high else '<='} {high:g}"
    return f"{prefix} in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"


def section(config: dict, name: str) -> Table:
    """The checked reader of one ``[name]`` table (``name`` may be dotted, e.g. ``ensemble.lightgbm``)."""
    values = config
    for part in name.split("."):
        values = values[part]
    return Table(values, f"{config['_source']} [{name}]")
