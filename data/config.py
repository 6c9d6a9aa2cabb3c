"""Configuration: ``configs/default.toml`` overlaid with a user TOML file, read with tomllib."""
from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

from .errors import DataError

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "default.toml"


def _read(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise DataError(f"{path}: invalid TOML: {e}") from None


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
    """The default config, overlaid with ``path`` when given. Unknown keys are an error."""
    config = _read(DEFAULT_CONFIG)
    if path is not None and Path(path).resolve() != DEFAULT_CONFIG:
        config = _merge(config, _read(Path(path)), Path(path))
    config["_source"] = str(path or DEFAULT_CONFIG)
    return config


def section(config: dict, name: str) -> dict[str, Any]:
    """One ``[name]`` table of the config, with the config's source for error messages."""
    return {**config[name], "_source": f"{config['_source']} [{name}]"}


def choice(table: dict, key: str, allowed: tuple[str, ...]) -> str:
    value = table[key]
    if value not in allowed:
        raise DataError(f"{table['_source']}: {key} = {value!r}, expected one of {', '.join(allowed)}")
    return value


def positive_int(table: dict, key: str, minimum: int = 1) -> int:
    value = table[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise DataError(f"{table['_source']}: {key} = {value!r}, expected an integer >= {minimum}")
    return value


def fraction(table: dict, key: str) -> float:
    value = table[key]
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
        raise DataError(f"{table['_source']}: {key} = {value!r}, expected a number in [0, 1]")
    return float(value)


def number_range(table: dict, key: str) -> tuple[float, float]:
    value = table[key]
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, (int, float)) for v in value) or value[0] > value[1]):
        raise DataError(f"{table['_source']}: {key} = {value!r}, expected [low, high]")
    return float(value[0]), float(value[1])
