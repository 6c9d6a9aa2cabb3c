"""Shared helpers: tiny face-layout datasets written the way other programs write them."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED_DFDC = Path(os.environ.get("DFE_SHARED_DFDC", REPO.parent / "shared" / "dfdc"))


def write_png(path: Path, seed: int = 0, size: int = 8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def write_video(root: Path, stem: str, frames, extra_faces=()) -> Path:
    """A face folder: ``<frame>.png`` for each frame, ``<frame>_2.png`` for frames in ``extra_faces``."""
    folder = root / stem
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        write_png(folder / f"{frame}.png", seed=hash((stem, frame)) % 2**32)
        if frame in extra_faces:
            write_png(folder / f"{frame}_2.png", seed=i + 1)
    return folder


def run_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """``python -m <args>`` as a user would run it, from the repository root."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, env=env)


@pytest.fixture
def config():
    from common.config import load_config
    return load_config()


def shared_file(name: str) -> Path:
    path = SHARED_DFDC / name
    if not path.exists():
        pytest.skip(f"real DFDC file {path} not present (../shared/dfdc is only on project machines)")
    return path
