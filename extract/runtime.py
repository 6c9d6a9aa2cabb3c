"""TensorFlow set-up shared by training, features and the benchmark: threads, devices, precision, seeds."""
from __future__ import annotations

from dataclasses import dataclass

from ._tensorflow import keras, tf  # noqa: F401  (TensorFlow without its start-up banner)


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


def infer(model: keras.Model, images, runtime: Runtime):
    """Model outputs for one batch. Under MirroredStrategy ``predict`` splits the batch across the GPUs
    (``predict_on_batch`` would hand every replica the whole batch and return it once per GPU)."""
    if runtime.gpus > 1:
        return model.predict(images, batch_size=int(images.shape[0]), verbose=0)
    return model.predict_on_batch(images)


def with_policy(model: keras.Model, policy: str) -> keras.Model:
    """A copy of ``model`` computing in ``policy`` (e.g. mixed_float16) with the same weights; the final score
    layer stays float32. Cloning keeps every layer of the trained graph (e.g. EfficientNet's ImageNet
    rescaling), which rebuilding from the registry would not."""
    def clone(layer):
        config = layer.get_config()
        if layer.name != "score" and "dtype" in config:
            config["dtype"] = policy
        return layer.__class__.from_config(config)
    copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
    copy.set_weights(model.get_weights())
    return copy
