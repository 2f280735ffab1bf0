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


def test_gpu_recipe_parses_and_every_member_builds_tiny():
    """pbc-gpu: the course project's recipe (ConvNeXt S/B/L ImageNet at 224 px + custom CNN) builds."""
    import gc

    import keras

    from zoo.registry import get_spec

    cfg = config.load("pbc-gpu")
    assert cfg.data.image_size == 224
    named = {m.member: m for m in cfg.members}
    assert {"convnext_small", "convnext_base", "convnext_large", "custom_cnn"} <= set(named)
    assert all(named[f"convnext_{s}"].weights == "imagenet" for s in ("small", "base", "large"))
    assert cfg.ensemble.enabled and set(cfg.ensemble.methods) == {"vote", "stack"} and cfg.distill.enabled
    assert set(cfg.export.quantize) == {"fp16", "int8"}
    assert cfg.bench.enabled and {"cuda", "tensorrt"} <= set(cfg.bench.providers)
    builds = [(m.member, m.params) for m in cfg.members] + [(cfg.distill.student, cfg.distill.params)]
    for member, params in builds:
        model = get_spec(member).build(
            8, 32, **{**params, **({"weights": None} if member.startswith("convnext") else {})}
        )
        assert model.output_shape == (None, 8), member
        del model
        keras.backend.clear_session()
        gc.collect()


def test_pipeline_sections_turn_into_the_stage_options():
    """[distill]/[ensemble] defaults come from the stage dataclasses; to_stage fills the rest from [train]."""
    from zoo.stage_config import DistillConfig, EnsembleConfig

    cfg = config.parse({"train": {"batch_size": 48, "seed": 7}, "distill": {"epochs": 3}, "ensemble": {"tta": True}})
    stage = DistillConfig()
    assert (cfg.distill.epochs, cfg.distill.alpha, cfg.distill.temperature) == (3, stage.alpha, stage.temperature)
    d = cfg.distill.to_stage(cfg.train)
    assert isinstance(d, DistillConfig) and (d.epochs, d.batch_size, d.seed, d.params) == (3, 48, 7, None)
    e = cfg.ensemble.to_stage("stack", seed=cfg.data.seed)
    assert isinstance(e, EnsembleConfig) and (e.method, e.tta, e.calibrate) == ("stack", "dihedral", True)
    assert d.augment == cfg.train.augment  # the student's policy defaults to [train]'s


def test_distill_augment_is_its_own_and_checked_when_the_config_loads():
    cfg = config.parse({"train": {"augment": "flip_rot90"}, "distill": {"augment": "shift"}})
    assert cfg.distill.to_stage(cfg.train).augment == "shift"
    with pytest.raises(ZooError, match=r"distill\.augment.*unknown augmentation 'stian'"):
        config.parse({"distill": {"augment": "flip_rot90,stian:0.3"}})


def test_clean_floors_reach_their_own_stage_only_and_need_shifted_rows():
    cfg = config.parse({"ensemble": {"vote_fit_shift": ["colour"], "vote_clean_floor": 0.98}})
    assert cfg.ensemble.to_stage("vote", seed=0).fit_clean_floor == 0.98
    assert cfg.ensemble.to_stage("stack", seed=0).fit_clean_floor is None
    assert cfg.ensemble.to_stage("stack", seed=0).fit_shift == []
    cfg = config.parse({"ensemble": {"stack_fit_shift": ["optics", "colour"], "stack_clean_floor": 0.988}})
    stack = cfg.ensemble.to_stage("stack", seed=0)
    assert (stack.fit_shift, stack.fit_clean_floor) == (["optics", "colour"], 0.988)
    assert cfg.ensemble.to_stage("vote", seed=0).fit_clean_floor is None
    for method in ("vote", "stack"):
        for bad in (
            {f"{method}_clean_floor": 0.98},
            {f"{method}_fit_shift": ["colour"], f"{method}_clean_floor": 98},
        ):
            with pytest.raises(ZooError, match=f"{method}_clean_floor"):
                config.parse({"ensemble": bad})
        with pytest.raises(ZooError, match=f"{method}_fit_shift.*lab"):
            config.parse({"ensemble": {f"{method}_fit_shift": ["lab"]}})


def test_ensemble_input_size_is_the_largest_member_size():
    cfg = config.parse(
        {
            "data": {"image_size": 64},
            "members": [{"member": "custom_cnn"}, {"member": "custom_cnn", "name": "b", "image_size": 96}],
        }
    )
    assert cfg.ensemble_input_size == 96
    assert cfg.member_image_sizes == [64, 96] and cfg.sizes_text() == "64 and 96 px (ensembles at 96)"
    single = config.parse({"data": {"image_size": 48}})
    assert single.ensemble_input_size == 48 and single.sizes_text() == "48 px"


def _train_and_ensemble_parser():
    """The parser of `zoo train`, `zoo ensemble …` and `zoo distill`, without the rest of the CLI."""
    import argparse

    from zoo.commands import ensemble as ens_cmd
    from zoo.commands import train as train_cmd

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    train_cmd.register(sub)
    ens_cmd.register(sub)
    return parser


def test_cli_defaults_are_the_dataclass_defaults():
    from zoo.stage_config import DistillConfig, EnsembleConfig
    from zoo.train_config import TrainConfig

    parser = _train_and_ensemble_parser()
    t = parser.parse_args(["train", "custom_cnn", "--out", "x"])
    assert (t.epochs, t.batch_size, t.lr, t.patience) == tuple(
        getattr(TrainConfig(), k) for k in ("epochs", "batch_size", "learning_rate", "patience")
    )
    d = parser.parse_args(["distill", "e", "--data", "d", "--out", "o"])
    assert (d.epochs, d.alpha, d.temperature, d.batch_size) == (
        DistillConfig.epochs,
        DistillConfig.alpha,
        DistillConfig.temperature,
        DistillConfig.batch_size,
    )
    v = parser.parse_args(["ensemble", "vote", "r1", "r2", "--out", "o"])
    assert (v.folds, v.batch_size) == (EnsembleConfig.folds, EnsembleConfig.batch_size)


def test_train_and_distill_take_the_learning_rate_under_either_spelling():
    parser = _train_and_ensemble_parser()
    for flag in ("--lr", "--learning-rate"):
        assert parser.parse_args(["train", "custom_cnn", "--out", "x", flag, "0.003"]).lr == 0.003
        d = parser.parse_args(["distill", "e", "--data", "d", "--out", "o", flag, "0.004"])
        assert d.learning_rate == 0.004


def test_params_flags_take_a_json_object_and_refuse_anything_else_in_one_line(tmp_path, capsys):
    from zoo.cli import main
    from zoo.commands.arguments import json_object
    from zoo.errors import ZooError

    assert json_object('{"widths": [8, 16]}', "--params") == {"widths": [8, 16]}
    assert json_object(None, "--params") is None and json_object("  ", "--params") is None
    with pytest.raises(ZooError, match="--learner-params must be a JSON object.*got list"):
        json_object("[16, 32]", "--learner-params")
    with pytest.raises(ZooError, match="--params: not valid JSON"):
        json_object("{widths: [8]}", "--params")  # the shell ate the quotes
    # every command that takes builder parameters refuses the same way, before it reads any data
    for argv in (
        ["train", "custom_cnn", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--params", "[16]"],
        ["distill", str(tmp_path), "--data", str(tmp_path), "--out", str(tmp_path / "s"), "--params", "[16]"],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "--params must be a JSON object" in err, err
    assert not (tmp_path / "r").exists() and not (tmp_path / "s").exists()
