"""The backbones known by name, without TensorFlow: the config's reader checks names here, and
``extract.backbones`` builds exactly these (the Keras application, or the project's own network)."""
from __future__ import annotations

from common.errors import DataError

# name -> (keras.applications module, class, ImageNet input size)
KERAS_APPLICATIONS: dict[str, tuple[str, str, int]] = {
    **{f"efficientnetb{i}": ("efficientnet", f"EfficientNetB{i}", size)
       for i, size in enumerate((224, 240, 260, 300, 380, 456, 528, 600))},
    "xception": ("xception", "Xception", 299),
    "mobilenetv2": ("mobilenet_v2", "MobileNetV2", 224),
    "mobilenetv3small": ("mobilenet_v3", "MobileNetV3Small", 224),
    "mobilenetv3large": ("mobilenet_v3", "MobileNetV3Large", 224),
    "resnet50": ("resnet50", "ResNet50", 224),
}
# the project's own small CPU-friendly networks: name -> the input size they were designed for
OWN_NETWORKS: dict[str, int] = {"smallcnn": 64, "rescnn": 96}
NAMES = (*KERAS_APPLICATIONS, *OWN_NETWORKS)


def check_backbone_name(name: str) -> str:
    if name not in NAMES:
        raise DataError(f"unknown backbone {name!r}; known: {', '.join(sorted(NAMES))}")
    return name
