"""The TensorFlow set-up every stage that runs a network shares.

Importing this module imports TensorFlow and Keras once, keeping TensorFlow's C++ start-up banner (the oneDNN
notice and absl's pre-initialisation warning, written straight to file descriptor 2) out of the stage's one-line
errors. :func:`setup` configures threads, devices, precision and seeds once per process.
"""
from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@contextlib.contextmanager
def quiet_native_stderr():
    """Silence file descriptor 2 (C++ logging: TensorFlow's oneDNN and CPU-feature notices, absl's
    pre-initialisation warning) for the block; Python exceptions still propagate."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


with quiet_native_stderr():
    import keras  # noqa: E402
    import tensorflow as tf  # noqa: E402

__all__ = ["keras", "tf", "Runtime", "setup", "quiet_native_stderr"]


@dataclass(frozen=True)
class Runtime:
    gpus: int
    mixed_precision: bool
    strategy: tf.distribute.Strategy

    def describe(self) -> str:
        device = f"{self.gpus} GPU(s)" if self.gpus else "CPU"
        return f"{device}, {'mixed_float16' if self.mixed_precision else 'float32'}, {type(self.strategy).__name__}"


_RUNTIME: Runtime | None = None


def setup(mixed_precision: str = "auto", intra_op_threads: int = 0, inter_op_threads: int = 0,
          seed: int | None = None, deterministic: bool = False) -> Runtime:
    """Configure TensorFlow once per process: GPU use (MirroredStrategy for several), mixed precision on GPU."""
    global _RUNTIME
    if _RUNTIME is None:
        if intra_op_threads:
            tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
        if inter_op_threads:
            tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)
        with quiet_native_stderr():            # the device scan prints TensorFlow's start-up notices
            gpus = tf.config.list_physical_devices("GPU")
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)
        mixed = mixed_precision == "on" or (mixed_precision == "auto" and bool(gpus))
        if mixed:
            keras.mixed_precision.set_global_policy("mixed_float16")
        strategy = tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
        if deterministic:
            tf.config.experimental.enable_op_determinism()
        _RUNTIME = Runtime(len(gpus), mixed, strategy)
    if seed is not None:
        keras.utils.set_random_seed(seed)
    return _RUNTIME
