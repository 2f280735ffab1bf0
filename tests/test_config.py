import pytest

from zoo import config
from zoo.errors import ZooError


def test_builtin_quickstart_is_valid():
    cfg = config.load()
    assert cfg.data.source.startswith("synthetic")
    assert len(cfg.members) >= 2 and cfg.train.epochs > 0


def test_empty_config_gets_defaults():
    cfg = config.parse({})
    assert cfg.train.optimizer == "adamw" and cfg.train.learning_rate == 1e-3 and cfg.train.patience == 4


@pytest.mark.parametrize(
    "data, match",
    [
        ({"trian": {}}, r"unknown key\(s\) \['trian'\]"),
        ({"train": {"epochs": "ten"}}, "train.epochs must be an integer"),
        ({"train": {"learning_rate": True}}, "must be a number"),
        ({"data": {"image_size": 4.5}}, "data.image_size must be an integer"),
        ({"members": [{"member": "custom_cnn", "colour": 1}]}, r"unknown key\(s\) \['colour'\]"),
        ({"members": [{"member": "nope"}]}, "unknown member 'nope'"),
        ({"members": [{"member": "custom_cnn", "train": {"epoch": 3}}]}, "unknown key"),
        ({"members": [{"member": "custom_cnn"}, {"member": "custom_cnn"}]}, "share the run name"),
        ({"members": [{"member": "custom_cnn", "name": "../x"}]}, "plain folder name"),
        ({"train": {"optimizer": "sgd"}}, "optimizer 'sgd'"),
        ({"ensemble": {"methods": ["bagging"]}}, "bagging"),
        ({"members": []}, "at least one member"),
    ],
)
def test_bad_configs_name_the_key(data, match):
    with pytest.raises(ZooError, match=match):
        config.parse(data)


def test_bad_toml_and_missing_file(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[train\nepochs = 3")
    with pytest.raises(ZooError, match="invalid TOML"):
        config.load(p)
    with pytest.raises(ZooError, match="not found"):
        config.load(tmp_path / "missing.toml")


@pytest.mark.parametrize("path", sorted(config.BUILTIN.glob("*.toml")), ids=lambda p: p.stem)
def test_every_builtin_config_is_valid(path):
    cfg = config.load(path.stem)  # by name, as `zoo run --config pbc-cpu`
    assert cfg.name == path.stem and cfg.members
