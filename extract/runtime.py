"""Running a trained model under the process's TensorFlow runtime: batches across GPUs, other precisions."""
from __future__ import annotations

from common.tensorflow_setup import Runtime, keras


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
