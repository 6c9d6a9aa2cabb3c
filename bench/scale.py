"""``python -m bench scale``: ``python -m ensemble fit`` on a generated DFDC-shaped feature cache, timed
and measured as a whole process tree. Writes ``reports/bench/scale.json``.

The dataset (in a fresh folder under ``--work``, deleted afterwards): N videos in families of one REAL original and
about five FAKEs (DFDC: 19,154 originals and 100,000 fakes in 119,154 videos; smaller N keep that ratio), split
train/blend/test by family with family-grouped folds (``data.splits``, the config's ``[splits]``), 32 frames per
video, a second face in ``[synth] second_face_rate`` of the families, and one feature file per backbone (the
config's ``[extract] backbones``), written streaming by the feature cache's own writer (``extract.cache``), a row
group of whole videos at a time; the videos table has ``data.tables``' column order. Scores carry the label
(FAKE higher, with per-video and per-frame noise; a FAKE's second face scores like a REAL one); embeddings are a
per-video centroid (family + video + a FAKE shift) plus per-crop noise, so the fit does real work.

Each executor runs ``ensemble fit`` as a subprocess from each ``--code`` checkout (e.g. a ``git worktree`` of an
older commit; several compare their fits on the one generated cache), sampling the summed RSS (and virtual size)
of the process and all its descendants every 0.2 s (psutil); a failed run is recorded with its exit code and last
stderr line.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

from common.atomic import write_json
from common.errors import DataError
from common.executor import ExecutorSpec, machine_cores
from data.tables import in_column_order
from ensemble.settings import MIN_NESTED_FOLDS
from extract import cache

DFDC_VIDEOS, DFDC_ORIGINALS = 119_154, 19_154     # the DFDC training set: 100,000 FAKEs of 19,154 REAL originals
FRAMES = 32                     # crops per face and video, evenly spaced over the clip
CLIP_FRAMES = 300               # a 10 s clip at 30 fps
DTYPES = tuple(cache.EMBEDDING_DTYPES)   # embedding storage: float32 or float16
ROW_GROUP_ROWS = min(4096, cache.ROW_GROUP_ROWS)   # most rows per written table, whole videos (10 MiB at
# float16): each is one row group of the file, so no video spans two
MAX_VIDEOS, MAX_DIM = 10_000_000, 16_384
MIN_BLEND_FOLDS = MIN_NESTED_FOLDS   # what ensemble fit's nested choice needs of the blend split
NAME = "scale"                  # the dataset name inside the work folder
NAME_LETTERS = 10               # DFDC-like video names: 10 lowercase letters + .mp4
DISK_MARGIN = 2**30             # free bytes left over after the cache
SAMPLE_SECONDS = 0.2            # RSS sampling period
STOP_SECONDS = 5                # grace between SIGTERM and SIGKILL for leftovers of a run
GIB = 2**30

# the score model, in logits: label mean + per-video difficulty (shared by backbones) + per-backbone + per-crop
FAKE_LOGIT, REAL_LOGIT = 0.5, -1.0
VIDEO_SD, BACKBONE_SD, CROP_SD = 1.0, 0.5, 1.0
# the embedding model: centroid = (family latent + VIDEO_SPREAD * video latent) @ W + FAKE_SHIFT * label * u
# (|u| = 1, a family centroid's norm is about sqrt(dim)); crop noise EMBEDDING_NOISE, FAKE_JITTER x more in FAKEs
LATENT = 16
VIDEO_SPREAD, FAKE_SHIFT, EMBEDDING_NOISE, FAKE_JITTER = 0.3, 3.0, 0.5, 1.1
# independent random streams (with the seed, the backbone and the batch index)
FIXED, FAMILIES, SHARED, BACKBONE = range(4)


@dataclass(frozen=True)
class ScaleSpec:
    """What the generated dataset is a function of."""

    videos: int
    backbones: tuple[str, ...]
    dim: int
    dtype: str                  # one of DTYPES
    seed: int
    fractions: dict             # [splits] train / blend / test shares
    folds: int
    second_face_rate: float


@dataclass(frozen=True)
class Measurement:
    """One ``ensemble fit`` run: exit code, wall seconds, peak summed RSS and address space (what RLIMIT_AS
    limits, per process) of the tree, the child's ru_maxrss (bytes), and the last stderr line of a failed run."""

    exit_code: int
    seconds: float
    peak_rss: int
    peak_vm: int
    child_maxrss: int
    error: str | None


# --- the dataset ---------------------------------------------------------------------------------------------

def family_count(videos: int) -> int:
    """REAL originals among ``videos``, in DFDC's proportion (at least one)."""
    return max(1, round(videos * DFDC_ORIGINALS / DFDC_VIDEOS))


def video_names(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) distinct DFDC-like names, ``aaqaifqrwn.mp4``."""
    codes = rng.choice(26**NAME_LETTERS, n, replace=False)
    letters = (codes[:, None] // 26 ** np.arange(NAME_LETTERS)[None, :]) % 26 + ord("a")
    return np.array([bytes(row).decode() + ".mp4" for row in letters.astype(np.uint8)], dtype=object)


def videos_table(spec: ScaleSpec) -> pd.DataFrame:
    """The interim videos table (``data.prepare``'s columns), sorted by video, split by family.

    One row per video: video, label (Int8), original, family, split, fold, n_frames, n_faces_max, n_crops,
    folder, source_split; plus ``family_index`` (the family's row in the latents), dropped before writing."""
    from data.splits import assign_splits

    rng = np.random.default_rng([spec.seed, FIXED])
    n_fam = family_count(spec.videos)
    fakes = np.full(n_fam, (spec.videos - n_fam) // n_fam)
    fakes[rng.permutation(n_fam)[: (spec.videos - n_fam) % n_fam]] += 1
    family = np.repeat(np.arange(n_fam), fakes + 1)           # each family: its original first, then its fakes
    label = np.ones(spec.videos, dtype=np.int8)
    first = np.concatenate([[0], np.cumsum(fakes + 1)[:-1]])
    label[first] = 0
    names = video_names(spec.videos, rng)
    originals = names[first][family]
    faces = np.where(rng.random(n_fam) < spec.second_face_rate, 2, 1)[family].astype(np.int32)
    videos = pd.DataFrame({
        "video": names, "label": pd.array(label, dtype="Int8"), "original": np.where(label == 1, originals, None),
        "family": originals, "family_index": family, "n_frames": np.int32(FRAMES), "n_faces_max": faces,
        "n_crops": faces * FRAMES, "folder": [n.removesuffix(".mp4") for n in names], "source_split": "train"})
    videos = in_column_order(assign_splits(videos, spec.fractions, spec.folds, spec.seed))
    return videos.sort_values("video").reset_index(drop=True)


def check_blend(videos: pd.DataFrame, n: int) -> None:
    """The blend split must have both labels in at least MIN_BLEND_FOLDS folds, as ``ensemble fit`` needs."""
    blend = videos[videos["split"] == "blend"]
    folds, labels = blend["fold"].nunique(), blend["label"].nunique()
    if folds < MIN_BLEND_FOLDS or labels < 2:
        raise DataError(f"--videos {n}: the blend split gets {blend['family'].nunique()} families in {folds} "
                        f"folds; ensemble fit needs {MIN_BLEND_FOLDS} folds with FAKE and REAL (raise --videos)")


def batches(rows: np.ndarray, limit: int) -> list[tuple[int, int]]:
    """[start, stop) slices of consecutive videos with ``rows`` (n,) rows each, at most ``limit`` rows a slice
    (a video with more rows gets a slice of its own)."""
    out, start, filled = [], 0, 0
    for i, r in enumerate(rows.tolist()):
        if filled and filled + r > limit:
            out.append((start, i))
            start, filled = i, 0
        filled += r
    if filled:
        out.append((start, len(rows)))
    return out


@dataclass(frozen=True)
class Batch:
    """The crop rows of consecutive videos, sorted by (video, frame, face)."""

    video: np.ndarray           # (rows,) names
    frame: np.ndarray           # (rows,) int32
    face: np.ndarray            # (rows,) int16, 1 or 2
    owner: np.ndarray           # (rows,) index of the row's video inside the batch
    label: np.ndarray           # (videos,) 0/1
    family: np.ndarray          # (videos,) family index
    difficulty: np.ndarray      # (videos,) logit offset shared by the backbones


def make_batch(videos: pd.DataFrame, start: int, stop: int, seed: int, index: int) -> Batch:
    """Rows of videos [start, stop): FRAMES frames each, faces 1..n_faces_max per frame."""
    sub = videos.iloc[start:stop]
    faces = sub["n_faces_max"].to_numpy()
    owner = np.repeat(np.arange(len(sub)), faces * FRAMES)
    frame_numbers = np.linspace(0, CLIP_FRAMES - 1, FRAMES).round().astype(np.int32)
    frame = np.concatenate([np.repeat(frame_numbers, f) for f in faces])
    face = np.concatenate([np.tile(np.arange(1, f + 1, dtype=np.int16), FRAMES) for f in faces])
    rng = np.random.default_rng([seed, SHARED, index])
    return Batch(sub["video"].to_numpy()[owner], frame, face, owner, sub["label"].to_numpy(np.int8),
                 sub["family_index"].to_numpy(), rng.normal(0, VIDEO_SD, len(sub)))


class BackboneModel:
    """One backbone's fixed projection W (LATENT, dim) and FAKE direction u (dim,); draws scores and embeddings."""

    def __init__(self, spec: ScaleSpec, b: int, family_latents: np.ndarray):
        rng = np.random.default_rng([spec.seed, FIXED, b])
        self.W = (rng.standard_normal((LATENT, spec.dim)) / np.sqrt(LATENT)).astype(np.float32)
        self.u = (rng.standard_normal(spec.dim) / np.sqrt(spec.dim)).astype(np.float32)
        self.families, self.seed, self.b, self.np_dtype = family_latents, spec.seed, b, np.dtype(spec.dtype)

    def draw(self, batch: Batch, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows,) float32 scores and (rows, dim) embeddings of the batch."""
        rng = np.random.default_rng([self.seed, BACKBONE, self.b, index])
        n = len(batch.label)
        logit = np.where(batch.label == 1, FAKE_LOGIT, REAL_LOGIT) + batch.difficulty + rng.normal(0, BACKBONE_SD, n)
        row_logit = np.where(batch.face == 1, logit[batch.owner], REAL_LOGIT)   # a FAKE's extra face is real
        row_logit = row_logit + rng.normal(0, CROP_SD, len(row_logit))
        scores = (1 / (1 + np.exp(-row_logit))).astype(np.float32)

        latent = (self.families[batch.family] + VIDEO_SPREAD * rng.standard_normal((n, LATENT))).astype(np.float32)
        first = latent @ self.W + batch.label[:, None] * (FAKE_SHIFT * self.u)[None, :]
        second = rng.standard_normal((n, LATENT)).astype(np.float32) @ self.W        # face 2: another person
        noise = np.where(batch.label == 1, EMBEDDING_NOISE * FAKE_JITTER, EMBEDDING_NOISE).astype(np.float32)
        emb = rng.standard_normal((len(scores), self.W.shape[1]), dtype=np.float32)
        emb *= noise[batch.owner, None]
        emb += np.concatenate([first, second])[batch.owner + n * (batch.face - 1)]
        return scores, emb.astype(self.np_dtype, copy=False)


def backbone_file(model: BackboneModel, videos: pd.DataFrame, slices: list[tuple[int, int]], spec: ScaleSpec,
                  key: str, path: Path, progress) -> None:
    """One backbone's feature file, written by ``extract.cache.write_tables`` a slice of videos (a row group) at a
    time; ``progress(videos)`` is called after each slice."""
    def tables():
        for index, (lo, hi) in enumerate(slices):
            batch = make_batch(videos, lo, hi, spec.seed, index)
            scores, emb = model.draw(batch, index)
            yield cache.feature_table(batch.video, batch.frame, batch.face, scores, emb, key, spec.dim, spec.dtype)
            progress(hi - lo)
    cache.write_tables(tables(), path)


def estimated_bytes(spec: ScaleSpec, rows: int) -> int:
    """The feature files' size on disk, about: the embeddings dominate and do not compress."""
    return rows * len(spec.backbones) * spec.dim * np.dtype(spec.dtype).itemsize


def generate(spec: ScaleSpec, root: Path, progress: bool = True) -> dict:
    """Write ``root/interim/NAME/videos.parquet`` and ``root/features/NAME/<backbone>.parquet``; returns
    {"families", "rows" (per backbone), "seconds", "cache_bytes" (the feature files)}. Memory is bounded by a
    row group of each backbone, whatever ``spec.videos``; the backbones are drawn and written in parallel
    threads, each from its own random streams, so the files do not depend on the thread timing (a thread draws
    the shared part of each batch itself: it depends only on the seed and the batch)."""
    from tqdm import tqdm

    start = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    videos = videos_table(spec)
    check_blend(videos, spec.videos)
    rows = int(videos["n_crops"].sum())
    need, free = estimated_bytes(spec, rows), shutil.disk_usage(root).free
    if need + DISK_MARGIN > free:
        raise DataError(f"{root}: the cache needs about {need / GIB:.1f} GiB, {free / GIB:.1f} GiB free "
                        "(--work elsewhere, fewer --videos or --dtype float16)")
    interim, features = root / "interim" / NAME, root / "features" / NAME
    interim.mkdir(parents=True)
    features.mkdir(parents=True)
    videos.drop(columns="family_index").to_parquet(interim / "videos.parquet", index=False)

    family_latents = np.random.default_rng([spec.seed, FAMILIES]).standard_normal(
        (int(videos["family_index"].max()) + 1, LATENT))
    key = f"bench-scale seed={spec.seed} videos={spec.videos}"
    slices = batches(videos["n_crops"].to_numpy(), ROW_GROUP_ROWS)
    with ExitStack() as stack:
        pool = stack.enter_context(ThreadPoolExecutor(len(spec.backbones)))      # NumPy and Parquet release the GIL
        bar = stack.enter_context(tqdm(total=spec.videos, unit="video", desc="generate", disable=not progress))
        done = [pool.submit(backbone_file, BackboneModel(spec, b, family_latents), videos, slices, spec, key,
                            features / f"{name}.parquet", bar.update if b == 0 else lambda n: None)
                for b, name in enumerate(spec.backbones)]
        for d in done:
            d.result()
    size = sum(f.stat().st_size for f in features.iterdir())
    return {"families": int(videos["family"].nunique()), "rows": rows, "seconds": time.perf_counter() - start,
            "cache_bytes": size}


# --- measuring a process tree ----------------------------------------------------------------------------------

def tree_memory(root: psutil.Process) -> np.ndarray:
    """(2,) summed RSS and virtual size of ``root`` and its descendants (shared pages count once per process;
    a process that ends meanwhile counts 0)."""
    total = np.zeros(2, dtype=np.int64)
    try:
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return total
    for proc in tree:
        try:
            info = proc.memory_info()
        except psutil.Error:
            continue
        total += (info.rss, info.vms)
    return total


def group_members(pgid: int) -> list[psutil.Process]:
    """The live (not zombie) processes of process group ``pgid``."""
    out = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc)
        except (psutil.Error, ProcessLookupError):
            pass
    return out


def stop_group(pgid: int) -> None:
    """End the processes still in the run's process group (e.g. orphaned workers): SIGTERM, then SIGKILL."""
    for stop in (psutil.Process.terminate, psutil.Process.kill):
        left = group_members(pgid)
        if not left:
            return
        for proc in left:
            try:
                stop(proc)
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(left, timeout=STOP_SECONDS)


# sets RLIMIT_AS, then becomes the command (same pid): no code runs between fork and exec in this process
LIMIT_THEN_EXEC = ("import os, resource, sys; resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[1]),) * 2); "
                   "os.execv(sys.argv[2], sys.argv[2:])")


def with_memory_limit(cmd: list[str], limit: int | None) -> list[str]:
    """``cmd`` (an absolute executable first) under an address-space limit of ``limit`` bytes, when given."""
    return [sys.executable, "-c", LIMIT_THEN_EXEC, str(limit), *cmd] if limit else cmd


def last_line(path: Path) -> str | None:
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1][:500] if lines else None


def run_measured(cmd: list[str], cwd: Path, env: dict, logs: Path, memory_limit: int | None) -> Measurement:
    """Run ``cmd`` in a new session, sampling the tree's RSS until it exits; stdout and stderr go to
    ``logs``.out / .err; ``memory_limit`` (bytes) caps its address space. An interrupt ends the process group."""
    with open(logs.with_suffix(".out"), "wb") as out, open(logs.with_suffix(".err"), "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(with_memory_limit(cmd, memory_limit), cwd=cwd, env=env, stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        peak, root = np.zeros(2, dtype=np.int64), psutil.Process(proc.pid)
        try:
            while True:
                done, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if done:
                    break
                peak = np.maximum(peak, tree_memory(root))
                time.sleep(SAMPLE_SECONDS)
            seconds = time.perf_counter() - start
            proc.returncode = os.waitstatus_to_exitcode(status)     # reaped here, for its rusage
        finally:
            stop_group(proc.pid)
    code = proc.returncode
    error = None if code == 0 else last_line(logs.with_suffix(".err")) or f"exit code {code}"
    return Measurement(code, seconds, int(peak[0]), int(peak[1]), usage.ru_maxrss * 1024, error)


# --- the bench -----------------------------------------------------------------------------------------------

def parse_executors(text: str) -> list[ExecutorSpec]:
    """``local,dask:2`` -> executor specs (distinct, in order)."""
    specs = []
    for item in text.split(","):
        item = item.strip()
        if item == "local":
            spec = ExecutorSpec()
        elif item.startswith("dask:") and item[5:].isdigit() and 1 <= int(item[5:]) <= machine_cores():
            spec = ExecutorSpec.parse("dask", f"local:{int(item[5:])}")
        else:
            raise DataError(f"--executors {text!r}: {item!r} is not local or dask:N (1 <= N <= {machine_cores()}, "
                            "the cores of this machine)")
        if spec in specs:
            raise DataError(f"--executors {text!r}: {spec.label} is listed twice")
        specs.append(spec)
    return specs


def executor_flags(spec: ExecutorSpec) -> list[str]:
    """The fit flags of an executor; none for local, so that checkouts without --executor run too."""
    return [] if spec.kind == "local" else ["--executor", spec.kind, "--scheduler", spec.scheduler]


def check_code(code: Path) -> Path:
    """An existing checkout with ``ensemble/__main__.py``, as an absolute path."""
    code = code.resolve()
    if not (code / "ensemble" / "__main__.py").is_file():
        raise DataError(f"--code {code}: not a checkout of this project (no ensemble/__main__.py)")
    return code


def git_version(code: Path) -> tuple[str, bool]:
    """The checkout's short commit hash ("unknown" outside git) and whether its tracked files are changed."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(code), *args], check=False, capture_output=True, text=True)

    head = git("rev-parse", "--short", "HEAD")
    if head.returncode != 0:
        return "unknown", False
    return head.stdout.strip(), bool(git("status", "--porcelain", "--untracked-files=no").stdout.strip())


def fit_command(root: Path, spec: ScaleSpec, executor: ExecutorSpec, config: Path | None) -> list[str]:
    """``python -m ensemble fit`` on the generated folders (absolute paths: it runs from the checkout)."""
    cmd = [sys.executable, "-m", "ensemble", "fit", "--name", NAME, "--interim", str(root / "interim"),
           "--features", str(root / "features"), "--out", str(root / "predictions"),
           "--models", str(root / "models"), "--backbone", *spec.backbones]
    return cmd + (["--config", str(config)] if config else []) + executor_flags(executor)


def best_method(root: Path) -> dict:
    """The fit's chosen method, its OOF log-loss and the nested figure of the choice, from its fit.json (empty
    when missing)."""
    try:
        report = json.loads((root / "predictions" / NAME / "fit.json").read_text())
        chosen = report["chosen"]
        nested = chosen.get("nested_oof_log_loss")
        return {"best_method": chosen["method"], "best_oof_log_loss": round(chosen["oof_log_loss"], 4),
                "nested_oof_log_loss": None if nested is None else round(nested, 4)}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def machine() -> dict:
    return {"cpus": os.cpu_count(), "mem_total_gib": round(psutil.virtual_memory().total / GIB, 1),
            "machine": platform.machine()}


RUN_KEY = ("videos", "backbones", "dim", "executor", "code", "code_path", "dtype")


def merge_runs(old: list[dict], new: list[dict]) -> list[dict]:
    """``old`` with each run of ``new`` replacing the one of the same RUN_KEY, or appended."""
    out = list(old)
    for run in new:
        key = tuple(run.get(k) for k in RUN_KEY)
        same = [i for i, r in enumerate(out) if tuple(r.get(k) for k in RUN_KEY) == key]
        if same:
            out[same[0]] = run
        else:
            out.append(run)
    return out


def read_runs(out: Path) -> list[dict]:
    """The runs of an existing report (none when it does not exist)."""
    if not out.exists():
        return []
    try:
        runs = json.loads(out.read_text())["runs"]
    except (OSError, ValueError, KeyError, TypeError):
        runs = None
    if not isinstance(runs, list):
        raise DataError(f"{out}: not a scale report ({{\"runs\": [...]}}); move it away or pick another --out")
    return runs


def save_run(out: Path, run: dict) -> None:
    write_json(out, {"runs": merge_runs(read_runs(out), [run])})


def record(spec: ScaleSpec, executor: ExecutorSpec, code: Path, version: tuple[str, bool], made: dict,
           m: Measurement, memory_limit_gib: float | None, load: float, root: Path) -> dict:
    """One run's entry of scale.json; ``load`` is the 1-minute load average as the run started (other work on
    the machine slows it down)."""
    return {
        "videos": spec.videos, "families": made["families"], "rows": made["rows"], "backbones": len(spec.backbones),
        "backbone_names": list(spec.backbones), "dim": spec.dim, "dtype": spec.dtype, "executor": executor.label,
        "code": version[0], "code_dirty": version[1], "code_path": str(code), "ok": m.exit_code == 0, "exit_code": m.exit_code,
        "error": m.error, "seconds": round(m.seconds, 2), "peak_rss_gib": round(m.peak_rss / GIB, 3),
        "peak_vm_gib": round(m.peak_vm / GIB, 3), "child_maxrss_gib": round(m.child_maxrss / GIB, 3),
        "memory_limit_gib": memory_limit_gib,
        "cache_gib": round(made["cache_bytes"] / GIB, 3), "cache_bytes": made["cache_bytes"],
        "generate_seconds": round(made["seconds"], 2), "load_before": round(load, 2),
        **(best_method(root) if m.exit_code == 0 else {}),
        **machine(), "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def run_scale(spec: ScaleSpec, executors: list[ExecutorSpec], codes: list[Path], work: Path, out: Path,
              config: Path | None = None, memory_limit_gib: float | None = None, keep: bool = False,
              progress: bool = True) -> list[dict]:
    """Generate the dataset in a fresh folder under ``work``, run ``ensemble fit`` from each checkout of ``codes``
    once per executor, on that one dataset, and merge each run into ``out`` as it finishes. The folder is deleted
    afterwards (also on an error or an interrupt) unless ``keep``; ``work`` too when that leaves it empty."""
    read_runs(out)                                   # a foreign file at --out stops the bench before any work
    made_work = not work.exists()
    work.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="scale-", dir=work)).resolve()
    limit = int(memory_limit_gib * GIB) if memory_limit_gib else None
    runs = []
    try:
        made = generate(spec, root, progress)
        print(f"generated {spec.videos:,} videos ({made['rows']:,} rows per backbone: {', '.join(spec.backbones)}; "
              f"{spec.dim} x {spec.dtype}) in {made['seconds']:.1f} s: {made['cache_bytes'] / GIB:.2f} GiB")
        (root / "logs").mkdir()
        for i, code, executor in [(i, c, e) for i, c in enumerate(codes) for e in executors]:
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(code),
                                                                            os.environ.get("PYTHONPATH")]))}
            load = os.getloadavg()[0]
            version = git_version(code)              # the code each fit starts from (a checkout may move on)
            m = run_measured(fit_command(root, spec, executor, config), code, env,
                             root / "logs" / f"{i}-{executor.label}", limit)
            run = record(spec, executor, code, version, made, m, memory_limit_gib, load, root)
            runs.append(run)
            save_run(out, run)
            state = "ok" if run["ok"] else f"FAILED (exit {m.exit_code}: {m.error})"
            print(f"ensemble fit [{executor.label}, code {version[0]}]: {state} in {run['seconds']:.1f} s, peak RSS "
                  f"{run['peak_rss_gib']:.2f} GiB (tree), {run['child_maxrss_gib']:.2f} GiB (ru_maxrss)")
    finally:
        if keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
            if made_work and not any(work.iterdir()):
                work.rmdir()
    print(f"wrote {out}")
    return runs
