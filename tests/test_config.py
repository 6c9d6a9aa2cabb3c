import pytest

from common.config import load_config
from conftest import bad_config_message, run_cli
from data.sampling import SamplingPolicy
from data.settings import load_settings as data_settings
from ensemble.settings import load_settings as ensemble_settings
from evaluate.settings import load_settings as evaluate_settings


def test_user_config_overrides_only_its_keys(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("seed = 7\n[sampling]\nframes = 'every'\nevery = 3\n")
    config = load_config(path)
    settings = data_settings(config)
    assert config["seed"] == 7 and settings.sampling == SamplingPolicy("every", 3, 32, "all")
    assert settings.splits.fractions == {"train": 0.5, "blend": 0.3, "test": 0.2} and settings.splits.folds == 5


def _all_settings(config):
    data_settings(config)
    ensemble_settings(config)
    evaluate_settings(config)


@pytest.mark.parametrize("text, words", [
    ("[sampling]\nframs = 'all'\n", "unknown config key 'sampling.frams'"),
    ("[sampling]\nframes = 'some'\n", "[sampling]: frames = 'some'"),
    ("[splits]\ntrain = 0.6\n", "must sum to 1"),
    ("[splits]\nfolds = 1\n", "[splits]: folds = 1"),
    ("seed = \n", "invalid TOML"),
    # issue #10, case 3: every key type- and range-checked where it is read
    ("[evaluate]\nsubmission_eps = 0.7\n", "[evaluate]: submission_eps = 0.7, expected a number in [0, 0.5)"),
    ("[ensemble]\nclip_eps = [0.7]\n", "[ensemble]: clip_eps = [0.7]"),
    ("seed = 1.5\n", "seed = 1.5, expected an integer in [0, 4294967295]"),
    ("seed = 'abc'\n", "seed = 'abc', expected an integer in [0, 4294967295]"),
    ("[ensemble.lightgbm]\nnum_leaves = 'four'\n", "[ensemble.lightgbm]: num_leaves = 'four', expected an integer"),
    ("[ensemble.lightgbm]\nlearning_rate = -1\n", "[ensemble.lightgbm]: learning_rate = -1"),
    ("[ensemble.lightgbm]\nmonotone = 'yes'\n", "[ensemble.lightgbm]: monotone = 'yes', expected true or false"),
    ("[ensemble]\nrules = ['mean', 'median', 'mean']\n", "rules = ['mean', 'median', 'mean'], expected a non-empty"),
    ("[ensemble]\npca_components = -1\n", "[ensemble]: pca_components = -1"),
    ("[evaluate]\nbootstrap = 0\n", "[evaluate]: bootstrap = 0"),
    ("[ensemble.protocols]\nframe_budgets = [4, 2]\n", "[ensemble.protocols]: frame_budgets = [4, 2], expected a "
                                                          "non-empty increasing list of integers"),
    ("[ensemble.protocols]\nframe_budgets = [0, 2]\n", "frame_budgets = [0, 2]"),
    ("[ensemble.protocols]\nablation = 1\n", "[ensemble.protocols]: ablation = 1, expected true or false"),
    ("[synth]\nfakes_per_original = 'many'\n", "[synth]: fakes_per_original = 'many'"),
    ("[faces]\nmargin = -0.5\n", "[faces]: margin = -0.5"),
    ("[faces]\nsecond_pass = 'tiled'\n", "[faces]: second_pass = 'tiled', expected one of upscale, tiles, off"),
    ("[extract]\nbackbones = 'smallcnn'\n", "[extract]: backbones = 'smallcnn'"),
    ("[extract]\nbackbones = ['../x']\n", "[extract]: backbones: backbone '../x' must be letters, digits"),
    ("[ensemble.blend]\neps = 0\n", "[ensemble.blend]: eps = 0, expected a number in (0, 0.5)"),
    ("[ensemble.blend.lightgbm]\nnum_leaves = 1\n", "[ensemble.blend.lightgbm]: num_leaves = 1, expected an integer"),
])
def test_bad_config_is_one_line_error_naming_file_table_and_key(tmp_path, text, words):
    assert words in bad_config_message(tmp_path, text, data_settings, ensemble_settings, evaluate_settings)


def test_default_config_passes_every_stage_check():
    config = load_config()
    _all_settings(config)
    assert ensemble_settings(config).clip_eps == (0.001, 0.01, 0.025, 0.05)
    assert evaluate_settings(config).submission_eps == 1e-15


def test_every_command_refuses_a_bad_value_of_a_table_it_does_not_read(tmp_path):
    """The config is checked whole, the same way, by every command: [ensemble] by data prepare and evaluate
    predict too (which read no [ensemble] value), with ensemble fit's one line."""
    bad = tmp_path / "bad.toml"
    bad.write_text("[ensemble.lightgbm]\nnum_leaves = 'four'\n")
    commands = [("ensemble", "fit"), ("data", "prepare", "--data", str(tmp_path)),
                ("evaluate", "predict", str(tmp_path)), ("evaluate", "score", str(bad), "--labels", str(bad)),
                ("extract", "features")]
    lines = set()
    for command in commands:
        res = run_cli(*command, "--config", str(bad), subprocess_run=False)
        assert res.returncode == 2 and res.stderr.count("\n") == 1, (command, res.stderr)
        lines.add(res.stderr)
    assert lines == {f"error: {bad} [ensemble.lightgbm]: num_leaves = 'four', expected an integer in [2, 131072]\n"}


def test_a_missing_weights_file_is_refused_by_the_config_check(tmp_path):
    from extract.settings import load_settings as extract_settings

    words = bad_config_message(tmp_path, "[backbones.smallcnn]\nweights = 'missing.weights.h5'\n", extract_settings)
    assert "[backbones.smallcnn]: weights = 'missing.weights.h5', expected 'imagenet', 'none' or an existing" in words
