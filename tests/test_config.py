"""RunConfig: validation up front, unknown keys named, a hash independent of how a path is spelled."""

import pytest

from widessl.errors import ConfigError
from widessl.experiments import RunConfig


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['widht'\]"):
        RunConfig.from_dict({"widht": 64})


def test_invalid_values_fail_before_any_work():
    with pytest.raises(ConfigError, match="arch='two_layer' has depth 1"):
        RunConfig(depth=3)
    with pytest.raises(ConfigError, match="lr must be a positive"):
        RunConfig(lr=-1.0)
    with pytest.raises(ConfigError, match="unknown activation"):
        RunConfig(activation="swish2")


def test_hash_ignores_path_spelling_and_device(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    rel, absolute = RunConfig(source="./data"), RunConfig(source=str(tmp_path / "data"))
    assert rel.source == absolute.source and rel.hash() == absolute.hash()
    assert RunConfig().hash() == RunConfig(device="cpu").hash() != RunConfig(width=512).hash()
