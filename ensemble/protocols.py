"""``python -m ensemble protocols``: the ensemble refit under the evaluation protocols researchers ask for.

- **Frame budget**: for each k of ``[ensemble.protocols] frame_budgets`` below the most frames a video has, every
  video keeps k of its cached frames (evenly spaced, as the ``linspace`` sampling policy picks them; every face of
  a kept frame). The rules are recomputed from those crops and every combiner is refit on the blend split with the
  same k, exactly as ``ensemble fit`` does, and the method is chosen again on the blend split's OOF log-loss.
  Budget 0 is the run on every cached crop. Nothing is re-extracted: all comes from the feature cache.
- **Backbone ablation**: every combiner refit (on every cached crop) without each backbone in turn.

The nested figure is not computed here: only the test rows of these tables are scored (by ``evaluate report``),
and nothing is chosen on them. Reads what ``ensemble fit`` reads, plus ``<backbone>.throughput.json`` (the frames/s
``extract features`` measured) for the cost of each budget. Writes to ``data/predictions/<NAME>/``:

- ``frame_budget.parquet``: one row per (budget, video): ``frames`` (0 = every cached crop), the predictions
  table's metadata columns, then every method column (rules, combiners, ``stack/chosen`` = the method chosen at
  that budget);
- ``ablation.parquet``: one row per (variant, video): ``without`` (a backbone, or "none" for the full ensemble), the
  metadata columns, then every method column;
- ``protocols.json`` (written last; ``ensemble.records.ProtocolsRecord``): per budget and per variant, the chosen
  method and the crops per video; the learned (non-reference) methods; each backbone's measured frames/s and the
  CNN seconds per video at each budget. A backbone without a throughput record gets a warning and no CNN cost.

Each variant is kept in ``.protocols/`` as it completes (keyed by the config and the input files), its record
holding the hash of its table, so a killed run resumes where it stopped and gives the same tables; a variant whose
table or record was damaged since is fitted again.
"""
from __future__ import annotations

import hashlib
import json
import math
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from common.atomic import atomic_path, locked, write_json
from common.errors import DataError
from common.executor import ExecutorSpec
from common.problems import Problems
from common.schema import read_json_object
from extract.cache import file_key

from .fit import (
    BlendData,
    blend_data,
    fit_methods,
    load_inputs,
    predictions_table,
)
from .records import CHOSEN, FULL, PROTOCOLS_FILE, AblationRecord, FrameBudgetRecord, ProtocolsRecord
from .selection import one_blas_thread
from .settings import EnsembleSettings, load_settings
from .video_features import has_frames

LOCAL = ExecutorSpec()
WORK = ".protocols"


def throughput(features_dir: Path, backbone: str) -> float | None:
    """The frames/s ``extract features`` measured for ``backbone`` (None when it left no record)."""
    path = features_dir / f"{backbone}.throughput.json"
    if not path.exists():
        return None
    fps = read_json_object(path, "rerun 'python -m extract features'").get("frames_per_s")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
        raise DataError(f"{path}: frames_per_s = {fps!r}, expected a positive number")
    return float(fps)


def without_backbone(data: BlendData, backbone: str, backbones: list[str]) -> BlendData:
    """``data`` with every column of ``backbone`` left out."""
    prefix = f"{backbone}/"
    X = data.X[[c for c in data.X.columns if not c.startswith(prefix)]].copy()
    rest = [b for b in backbones if b != backbone]
    return replace(data, X=X, rule_cols=[c for c in data.rule_cols if not c.startswith(prefix)],
                   seen=has_frames(X, rest))


@dataclass(frozen=True)
class Variant:
    """What ``protocols.json`` takes from one fitted variant; saved in ``.protocols/<kind>-<value>.json`` with the
    hash of the variant's table, until the run completes."""

    chosen: str                        # the method chosen on the blend split
    learned: tuple[str, ...]           # the learned methods' columns, ``stack/chosen`` last
    crops_per_video: dict              # {backbone: mean crops per video with a crop}

    def to_json(self, table_sha256: str) -> dict:
        return {"chosen": self.chosen, "learned": list(self.learned), "crops_per_video": self.crops_per_video,
                "table_sha256": table_sha256}

    @classmethod
    def read(cls, work: Path, stem: str) -> Variant | None:
        """The variant's record when it and its table are whole (the table's bytes match the hash saved with
        it); None otherwise: the variant is fitted again."""
        try:
            obj = json.loads((work / f"{stem}.json").read_text())
            digest = hashlib.sha256((work / f"{stem}.parquet").read_bytes()).hexdigest()
            if not isinstance(obj, dict) or obj.get("table_sha256") != digest:
                return None
            variant = cls(obj["chosen"], tuple(obj["learned"]), obj["crops_per_video"])
        except (ValueError, OSError, RecursionError, KeyError, TypeError):
            return None
        ok = isinstance(variant.chosen, str) and all(isinstance(m, str) for m in variant.learned) and \
            isinstance(variant.crops_per_video, dict) and all(
                isinstance(c, (int, float)) and not isinstance(c, bool) for c in variant.crops_per_video.values())
        return variant if ok else None


def fit_variant(settings: EnsembleSettings, videos: pd.DataFrame, data: BlendData, backbones: list[str]
                ) -> tuple[pd.DataFrame, Variant]:
    """Every combiner fitted on ``data`` as ``ensemble fit`` fits them (its predictions table with ``stack/chosen``
    = the chosen method's column) and the variant's chosen method, learned methods and crops per video."""
    out = predictions_table(videos, data, backbones)
    with one_blas_thread():
        record, _ = fit_methods(settings, data, out, videos["family"].to_numpy())
    out[CHOSEN] = out[record.best_method]
    crops = {b: float(data.X[f"{b}/n_crops"][data.seen].mean()) if data.seen.any() else 0.0 for b in backbones}
    learned = [m for m, r in record.methods.items() if not r.reference]
    return out, Variant(record.best_method, (*learned, CHOSEN), crops)


def _key(config: dict, interim: Path, files: dict[str, Path]) -> str:
    used = {k: config.get(k) for k in ("seed", "ensemble")}
    used["backbones"] = list(files)
    h = hashlib.sha256(json.dumps(used, sort_keys=True, default=str).encode())
    h.update(hashlib.sha256((interim / "videos.parquet").read_bytes()).digest())
    for name, path in files.items():
        h.update(f"{name}|{file_key(path)}|{path.stat().st_size}".encode())
    return h.hexdigest()


def variants(settings: EnsembleSettings, most_frames: int) -> list[tuple[str, int | str]]:
    """("frames", k) for each budget below ``most_frames``, then ("frames", 0), then ("without", backbone) for
    each backbone when the ablation is on and there are two or more."""
    out: list[tuple[str, int | str]] = [("frames", k) for k in settings.protocols.frame_budgets if k < most_frames]
    out.append(("frames", 0))
    if settings.protocols.ablation and len(settings.backbones) > 1:
        out += [("without", b) for b in settings.backbones]
    return out


def run_protocols(config: dict, interim: Path, features_dir: Path, out_dir: Path,
                  executor: ExecutorSpec = LOCAL) -> dict:
    """Fit every variant (resuming from ``out_dir/.protocols``), write the two tables and ``protocols.json``;
    returns the latter's content."""
    settings = replace(load_settings(config), nested=False)
    backbones = list(settings.backbones)
    videos, files = load_inputs(interim, features_dir, backbones)
    if not (out_dir / "videos.parquet").exists():
        raise DataError(f"{out_dir}/videos.parquet: not found; run 'make ensemble' (python -m ensemble fit) first")
    fps = {b: throughput(features_dir, b) for b in backbones}     # checked before the long work
    unmeasured = Problems()
    for b in backbones:
        if fps[b] is None:
            unmeasured.add("backbones without a throughput record (the CNN cost is left empty; 'python -m extract "
                           "features' measures it)", str(features_dir / f"{b}.throughput.json"))
    unmeasured.warn()
    most = int(videos["n_frames"].max()) if len(videos) else 0
    todo = variants(settings, most)
    work = out_dir / WORK
    key = _key(config, interim, files)
    with locked(work):                   # two runs of one dataset take turns: one work folder
        if work.exists() and _read_key(work) != key:
            shutil.rmtree(work)
        work.mkdir(parents=True, exist_ok=True)
        write_json(work / "key.json", {"key": key})
        full: BlendData | None = None
        done: dict[tuple, Variant] = {}
        for kind, value in tqdm(todo, desc="ensemble protocols", unit="fit"):
            stem = f"{kind}-{value}"
            kept = Variant.read(work, stem)
            if kept is not None:
                done[(kind, value)] = kept
                continue
            if kind == "frames" and value:
                data, _ = blend_data(videos, files, settings, interim, executor, frames=int(value))
                names = backbones
            else:
                if full is None:
                    full, _ = blend_data(videos, files, settings, interim, executor)
                data, names = (full, backbones) if kind == "frames" else \
                    (without_backbone(full, str(value), backbones), [b for b in backbones if b != value])
            table, variant = fit_variant(settings, videos, data, names)
            with atomic_path(work / f"{stem}.parquet") as tmp:
                table.to_parquet(tmp, index=False)
                digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
            write_json(work / f"{stem}.json", variant.to_json(digest))       # last: the variant is done
            done[(kind, value)] = variant
        return _assemble(todo, done, work, out_dir, fps, most)


def _read_key(work: Path) -> str | None:
    try:
        return json.loads((work / "key.json").read_text()).get("key")
    except (ValueError, OSError, AttributeError):
        return None


def _assemble(todo: list, infos: dict[tuple, Variant], work: Path, out_dir: Path, fps: dict[str, float | None],
              most: int) -> dict:
    """Write the two tables and ``protocols.json`` from the fitted variants, remove the work folder; returns the
    record's content."""
    budgets = tuple(v for kind, v in todo if kind == "frames")
    seconds = {}
    for k in budgets:
        crops = infos[("frames", k)].crops_per_video
        seconds[k] = None if any(f is None for f in fps.values()) else sum(crops[b] / fps[b] for b in crops)
    full = infos[("frames", 0)]
    budget = FrameBudgetRecord(budgets, most, {k: infos[("frames", k)].chosen for k in budgets},
                               {k: infos[("frames", k)].crops_per_video for k in budgets}, fps, seconds, full.learned)
    ablated = tuple(v for kind, v in todo if kind == "without")
    ablation = AblationRecord(ablated, {FULL: full.chosen, **{b: infos[("without", b)].chosen for b in ablated}},
                              full.learned) if ablated else None
    report = ProtocolsRecord(budget, ablation)
    with locked(out_dir.with_name(f"{out_dir.name}.fit")):      # never beside a fit that replaces the folder
        _write_long(work, [(f"frames-{k}", k) for k in budgets], "frames", out_dir / "frame_budget.parquet")
        target = out_dir / "ablation.parquet"
        if ablated:
            _write_long(work, [("frames-0", FULL)] + [(f"without-{b}", b) for b in ablated], "without", target)
        elif target.exists():
            target.unlink()
        report.write(out_dir / PROTOCOLS_FILE)
    shutil.rmtree(work)
    return report.to_json()


def _write_long(work: Path, stems: list[tuple[str, int | str]], column: str, target: Path) -> None:
    """The variants' tables one under the other, ``column`` first; columns a variant lacks are left empty."""
    tables = [pd.read_parquet(work / f"{stem}.parquet").assign(**{column: value}) for stem, value in stems]
    table = pd.concat(tables, ignore_index=True)
    table = table[[column] + [c for c in table.columns if c != column]]
    with atomic_path(target) as tmp:
        table.to_parquet(tmp, index=False)

