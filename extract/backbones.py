"""The backbone registry: a CNN by name, as in ``keras.applications``, plus a small CPU-friendly CNN.

Every model is ``backbone -> GlobalAveragePooling2D (the embedding) -> Dropout -> Dense(1, sigmoid) (the score)``.
Images enter as float32 RGB in [0, 255]; each backbone's own ``preprocess_input`` is applied in the input
pipeline, not inside the model, so saved models hold only standard layers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from common.errors import DataError
from common.paths import input_file
from common.tensorflow_setup import keras, tf  # noqa: F401  (TensorFlow without its start-up banner)

from .card import check_model_file
from .registry import KERAS_APPLICATIONS, NAMES, OWN_NETWORKS, check_backbone_name

layers = keras.layers

EMBEDDING_LAYER = "embedding"
SCRATCH_BN_MOMENTUM = 0.9
SCORE_LAYER = "score"


@dataclass(frozen=True)
class Backbone:
    """A registry entry: how to build the feature extractor and how to preprocess its input."""

    name: str
    build: Callable[..., keras.Model]        # build(input_shape=(h, w, 3), weights=None | "imagenet" | path)
    preprocess: Callable                    # preprocess(images float32 [0, 255]) -> model input
    native_size: int                        # the ImageNet input size, for reference


def _app(module: str, cls: str, native: int, **kwargs) -> tuple[Callable, Callable, int]:
    mod = getattr(keras.applications, module)
    fn = getattr(keras.applications, cls)

    def build(input_shape, weights):
        return fn(include_top=False, weights=weights, input_shape=input_shape, **kwargs)
    return build, mod.preprocess_input, native


def _small_cnn(input_shape, weights):
    """Four VGG-style conv blocks (16-32-64-128 filters) with batch norm; about 0.3 M parameters."""
    x = inputs = keras.Input(input_shape)
    for i, filters in enumerate((16, 32, 64, 128)):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{i}_conv1")(x)
        x = layers.BatchNormalization(name=f"block{i}_bn1")(x)
        x = layers.Activation("relu", name=f"block{i}_relu1")(x)
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{i}_conv2")(x)
        x = layers.BatchNormalization(name=f"block{i}_bn2")(x)
        x = layers.Activation("relu", name=f"block{i}_relu2")(x)
        if i < 3:
            x = layers.MaxPooling2D(name=f"block{i}_pool")(x)
    model = keras.Model(inputs, x, name="smallcnn")
    if weights == "imagenet":
        raise DataError("smallcnn has no ImageNet weights; use weights = 'none' or a local weights file")
    return model


def _res_cnn(input_shape, weights):
    """A small residual CNN for larger views (2.25x smallcnn's input pixels) at about smallcnn's cost: a 2x2
    stride-2 stem (16 filters; a learned downscaling over every pixel, where resizing further would average fine
    traces away), then four residual stages (16-32-64-128 filters), each a max-pool (after the first) and two
    3x3 convolutions with batch norm around an identity or 1x1-projection shortcut; about 0.3 M parameters."""
    x = inputs = keras.Input(input_shape)
    x = layers.Conv2D(16, 2, strides=2, use_bias=False, name="stem_conv")(x)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.Activation("relu", name="stem_relu")(x)
    for i, filters in enumerate((16, 32, 64, 128)):
        if i > 0:
            x = layers.MaxPooling2D(name=f"stage{i}_pool")(x)
        shortcut = x
        if x.shape[-1] != filters:
            shortcut = layers.Conv2D(filters, 1, use_bias=False, name=f"stage{i}_proj")(x)
            shortcut = layers.BatchNormalization(name=f"stage{i}_proj_bn")(shortcut)
        y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"stage{i}_conv1")(x)
        y = layers.BatchNormalization(name=f"stage{i}_bn1")(y)
        y = layers.Activation("relu", name=f"stage{i}_relu1")(y)
        y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"stage{i}_conv2")(y)
        y = layers.BatchNormalization(name=f"stage{i}_bn2")(y)
        x = layers.Add(name=f"stage{i}_add")([shortcut, y])
        x = layers.Activation("relu", name=f"stage{i}_out")(x)
    model = keras.Model(inputs, x, name="rescnn")
    if weights == "imagenet":
        raise DataError("rescnn has no ImageNet weights; use weights = 'none' or a local weights file")
    return model


def _scale_to_unit(images):
    """Map [0, 255] to [-1, 1]."""
    return images / 127.5 - 1.0


REGISTRY: dict[str, Backbone] = {}


def register(name: str, build: Callable, preprocess: Callable, native_size: int) -> None:
    REGISTRY[name] = Backbone(name, build, preprocess, native_size)


for _name, (_module, _cls, _size) in KERAS_APPLICATIONS.items():
    register(_name, *_app(_module, _cls, _size))
register("smallcnn", _small_cnn, _scale_to_unit, OWN_NETWORKS["smallcnn"])
register("rescnn", _res_cnn, _scale_to_unit, OWN_NETWORKS["rescnn"])
assert set(REGISTRY) == set(NAMES), "every name of extract.registry has its network here"


def get_backbone(name: str) -> Backbone:
    return REGISTRY[check_backbone_name(name)]


def _backbone_weights(weights: str) -> str | None:
    """Keras' ``weights`` argument for a config value: "none", "imagenet" or a local file (checked to exist by
    the config's ``[backbones.*]`` reader, the entry point; a file gone since fails to load, in one line)."""
    return None if weights == "none" else str(weights)


def build_model(name: str, input_size: int, weights: str = "none", dropout: float = 0.2) -> keras.Model:
    """The frame classifier: input (size, size, 3) preprocessed images -> P(FAKE) of shape (batch, 1).

    Its layer ``embedding`` (GlobalAveragePooling2D) is the frame embedding.
    """
    backbone = get_backbone(name)
    source = _backbone_weights(weights)
    shape = (input_size, input_size, 3)
    try:
        if name == "smallcnn" or source in (None, "imagenet"):
            base = backbone.build(shape, source)
        else:
            base = backbone.build(shape, None)
    except DataError:
        raise
    except Exception as e:  # Keras raises plain Exception subclasses for failed downloads
        if source == "imagenet":
            raise DataError(f"backbone {name}: could not get ImageNet weights ({type(e).__name__}: "
                            f"{str(e).splitlines()[0][:160]}); without internet, set weights to a local file "
                            "or 'none' in the config") from None
        raise
    if source is None:
        # from scratch: ImageNet-tuned BN momenta (0.99-0.999) leave the moving statistics far from the
        # data after the few hundred steps a small dataset gives, and inference collapses to a constant
        for layer in base.layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.momentum = min(layer.momentum, SCRATCH_BN_MOMENTUM)
    if source not in (None, "imagenet"):
        try:
            base.load_weights(source)
        except Exception as e:
            raise DataError(f"backbone {name}: cannot load weights file {source}: {str(e).splitlines()[0][:200]}") \
                from None
    inputs = keras.Input(shape, name="image")
    x = base(inputs)
    embedding = layers.GlobalAveragePooling2D(name=EMBEDDING_LAYER)(x)
    x = layers.Dropout(dropout, name="dropout")(embedding)
    score = layers.Dense(1, activation="sigmoid", dtype="float32", name=SCORE_LAYER)(x)
    return keras.Model(inputs, score, name=f"{name}_classifier")


def feature_model(model: keras.Model) -> keras.Model:
    """A view of a trained classifier with outputs ``(embedding (batch, D), score (batch, 1))``."""
    return keras.Model(model.inputs, [model.get_layer(EMBEDDING_LAYER).output, model.output])


def load_keras(path: Path, compile: bool = False) -> keras.Model:
    """Load a ``.keras`` file in Keras safe mode: a Lambda layer (arbitrary code) is refused, and a file that is
    not a whole ``.keras`` archive (truncated, random bytes) is a one-line error saying so."""
    check_model_file(path)
    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=True)
    except ValueError as e:
        if "lambda" in str(e).lower() or "safe_mode" in str(e):
            raise DataError(f"{path}: refused, the model holds a Lambda layer (arbitrary code); only models "
                            "made of standard layers are loaded (Keras safe mode)") from None
        raise DataError(f"{path}: not a loadable Keras model: {str(e).splitlines()[0][:200]}") from None
    except (OSError, KeyError, TypeError) as e:
        raise DataError(f"{path}: not a loadable Keras model: {type(e).__name__}: {str(e)[:200]}") from None


def load_classifier(path: Path) -> keras.Model:
    """A saved classifier (see :func:`load_keras`)."""
    return load_keras(input_file(path, "model", "run 'make features' (python -m extract train) first"))
