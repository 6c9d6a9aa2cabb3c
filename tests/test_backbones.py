"""The backbone registry and safe model loading (in-process, tiny inputs, no downloads)."""
import keras
import numpy as np
import pytest

from common.errors import DataError
from conftest import bad_config_message
from extract import backbones
from extract.backbones import REGISTRY, build_model, feature_model, load_classifier

NAMES = [f"efficientnetb{i}" for i in range(8)] + ["xception", "mobilenetv2", "mobilenetv3small",
                                                   "mobilenetv3large", "resnet50", "smallcnn", "rescnn"]
LIGHT = {"smallcnn": 32, "rescnn": 32, "mobilenetv3small": 32, "mobilenetv2": 32, "efficientnetb0": 32,
         "resnet50": 32, "xception": 71}


def test_registry_holds_every_named_backbone():
    assert sorted(REGISTRY) == sorted(NAMES)
    with pytest.raises(DataError, match="unknown backbone 'vgg16'"):
        build_model("vgg16", 32)


@pytest.mark.parametrize("name, size", sorted(LIGHT.items()))
def test_model_is_backbone_pooling_dropout_sigmoid(name, size):
    model = build_model(name, size, "none", dropout=0.3)
    assert [layer.name for layer in model.layers[-3:]] == ["embedding", "dropout", "score"]
    assert model.get_layer("dropout").rate == 0.3
    images = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
    emb, score = feature_model(model).predict_on_batch(REGISTRY[name].preprocess(images))
    assert emb.shape == (2, model.get_layer("embedding").output.shape[-1]) and score.shape == (2, 1)
    assert ((score > 0) & (score < 1)).all()


def test_from_scratch_models_use_a_fast_batch_norm_momentum():
    model = build_model("mobilenetv3small", 32, "none")
    momenta = {layer.momentum for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)}
    assert momenta == {backbones.SCRATCH_BN_MOMENTUM}


@pytest.mark.parametrize("name", ["smallcnn", "rescnn"])
def test_own_designs_have_no_imagenet_weights(name):
    with pytest.raises(DataError, match=f"{name} has no ImageNet weights"):
        build_model(name, 32, "imagenet")


def test_rescnn_is_residual_with_a_strided_stem():
    base = build_model("rescnn", 32).layers[1]
    assert sum(type(layer).__name__ == "Add" for layer in base.layers) == 4
    assert base.get_layer("stem_conv").strides == (2, 2) and base.output.shape[1:] == (2, 2, 128)


def test_imagenet_without_internet_is_a_clear_error(monkeypatch):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -2] Name or "
                        "service not known")
    monkeypatch.setattr(keras.applications, "EfficientNetB0", offline)
    monkeypatch.setitem(REGISTRY, "efficientnetb0", REGISTRY["efficientnetb0"].__class__(
        "efficientnetb0", backbones._app("efficientnet", "EfficientNetB0", 224)[0], lambda x: x, 224))
    with pytest.raises(DataError, match="could not get ImageNet weights.*local file or 'none'"):
        build_model("efficientnetb0", 32, "imagenet")


def test_local_weights_file(tmp_path):
    donor = build_model("smallcnn", 32, "none")
    base = donor.layers[1]
    path = tmp_path / "smallcnn.weights.h5"
    base.save_weights(path)
    model = build_model("smallcnn", 32, str(path))
    for a, b in zip(model.layers[1].get_weights(), base.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(DataError, match="cannot load weights file .*missing.h5"):      # gone since the config check
        build_model("smallcnn", 32, str(tmp_path / "missing.h5"))


def test_safe_loading_refuses_a_lambda_layer(tmp_path):
    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(lambda x: x * 2)(inputs)
    path = tmp_path / "evil.keras"
    keras.Model(inputs, outputs).save(path)
    with pytest.raises(DataError, match="refused, the model holds a Lambda layer"):
        load_classifier(path)
    good = tmp_path / "good.keras"
    build_model("smallcnn", 32).save(good)
    assert load_classifier(good).name == "smallcnn_classifier"
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a .keras model file"):
        load_classifier(tmp_path / "junk.keras")


def test_training_resumes_only_from_a_safe_whole_checkpoint(tmp_path):
    """Issue #10, case 7: the checkpoint `extract train` resumes from goes through the same safe loader."""
    from common.config import load_config
    from common.tensorflow_setup import setup
    from extract.settings import load_settings
    from extract.train import _model

    settings = load_settings(load_config())
    spec, runtime = settings.backbones[0], setup()
    state = {"epoch": 1, "checkpoint": "epoch-001.keras"}
    inputs = keras.Input((4,))
    keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs)).save(tmp_path / "lambda.keras")
    good = build_model("smallcnn", 32)
    good.compile(optimizer="adam", loss="binary_crossentropy")
    good.save(tmp_path / "good.keras")
    whole = (tmp_path / "good.keras").read_bytes()
    for name, content, words in (("lambda", None, "refused, the model holds a Lambda layer"),
                                 ("truncated", whole[: len(whole) // 2], "not a .keras model file"),
                                 ("random", np.random.default_rng(0).bytes(4096), "not a .keras model file")):
        work = tmp_path / name
        work.mkdir()
        source = tmp_path / "lambda.keras"
        (work / "epoch-001.keras").write_bytes(source.read_bytes() if content is None else content)
        with pytest.raises(DataError, match=words) as err:
            _model(spec, settings.train, state, work, runtime, 100)
        assert str(work / "epoch-001.keras") in str(err.value) and "\n" not in str(err.value)
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "epoch-001.keras").write_bytes(whole)
    assert _model(spec, settings.train, state, tmp_path / "ok", runtime, 100).name == "smallcnn_classifier"


@pytest.mark.parametrize("text, words", [
    ("[extract]\nbackbones = ['nope']\n", "[extract]: backbones: unknown backbone 'nope'"),
    ("[extract.train]\nval_fold = 7\n", "[extract.train]: val_fold = 7, expected an integer in [0, 4]"),
    ("[extract.augment]\njpeg_quality = [60.5, 95]\n",
     "[extract.augment]: jpeg_quality = [60.5, 95], expected [low, high] of integers"),
    ("[backbones.smallcnn]\ncenter_crop = 0.1\n", "[backbones.smallcnn]: center_crop = 0.1"),
    ("[extract.train]\naugment = 'yes'\n", "[extract.train]: augment = 'yes', expected true or false"),
    ("[extract.train]\nmonitor = 'loss'\n", "[extract.train]: monitor = 'loss', expected one of auc, balanced_log_loss"),
])
def test_extract_settings_errors_name_file_table_and_key(tmp_path, text, words):
    from extract.settings import load_settings

    assert words in bad_config_message(tmp_path, text, load_settings)
