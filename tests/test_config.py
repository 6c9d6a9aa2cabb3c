import pytest

from data.config import load_config
from data.errors import DataError
from data.sampling import SamplingPolicy
from data.splits import split_config


def test_user_config_overrides_only_its_keys(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("seed = 7\n[sampling]\nframes = 'every'\nevery = 3\n")
    config = load_config(path)
    assert config["seed"] == 7 and SamplingPolicy.from_config(config) == SamplingPolicy("every", 3, 32, "all")
    assert split_config(config) == ({"train": 0.5, "blend": 0.3, "test": 0.2}, 5)


@pytest.mark.parametrize("text, words", [
    ("[sampling]\nframs = 'all'\n", "unknown config key 'sampling.frams'"),
    ("[sampling]\nframes = 'some'\n", "frames = 'some'"),
    ("[splits]\ntrain = 0.6\n", "must sum to 1"),
    ("[splits]\nfolds = 1\n", "folds = 1"),
    ("seed = \n", "invalid TOML"),
])
def test_bad_config_is_one_line_error_naming_the_file(tmp_path, text, words):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(DataError) as err:
        config = load_config(path)
        SamplingPolicy.from_config(config)
        split_config(config)
    assert str(path) in str(err.value) and words in str(err.value)
