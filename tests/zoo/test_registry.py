import numpy as np
import pytest

from zoo import ZooError, create_model, get_spec, list_models, register_model


def test_list_models_has_baseline_and_filters():
    names = list_models()
    assert "custom_cnn" in names
    assert list_models("custom_*") == [n for n in names if n.startswith("custom_")]
    assert list_models("no_such_*") == []


def test_defaults_come_from_builder_signature():
    spec = get_spec("custom_cnn")
    assert spec.defaults["dropout"] == 0.35
    assert spec.defaults["l1l2"] == 1e-3
    assert spec.default_image_size == 64


def test_create_model_takes_raw_pixels_and_returns_probabilities(tiny_params):
    model = create_model("custom_cnn", num_classes=5, image_size=24, **tiny_params)
    assert model.input_shape == (None, 24, 24, 3)
    x = np.random.default_rng(0).uniform(0, 255, (3, 24, 24, 3)).astype("float32")
    p = model.predict(x, verbose=0)
    assert p.shape == (3, 5)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)


def test_unknown_member_and_param_are_clear_errors():
    with pytest.raises(ZooError, match="unknown member 'resnet9000'.*custom_cnn"):
        create_model("resnet9000", 8)
    with pytest.raises(ZooError, match="unknown parameter.*'nope'"):
        create_model("custom_cnn", 8, 32, nope=1)


def test_register_twice_is_refused(monkeypatch):
    import zoo.models  # noqa: F401  (every real member registered before the registry is copied)
    from zoo import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # the test member leaves with the test

    @register_model(family="test", default_image_size=16, description="test-only", name="_test_member")
    def _builder(num_classes, image_size, width: int = 4):
        raise AssertionError("not built")

    assert get_spec("_test_member").defaults == {"width": 4}
    with pytest.raises(ValueError, match="registered twice"):
        register_model(family="test", default_image_size=16, description="dup", name="_test_member")(_builder)
