"""ConvNeXt family: layout, layers, official-weight mapping, export, fine-tuning, scale-out builds.

Everything is tiny (16-32 px, narrow configs) except the weight-mapping test, which needs the
real ConvNeXt-T structure (28M params) but runs it at 32 px on four images.
"""

from __future__ import annotations

import hashlib

import keras
import numpy as np
import pytest

import zoo.models  # noqa: F401  (registers the members)
from zoo.errors import ZooError
from zoo.models.convnext import weights as cw
from zoo.models.convnext.layers import DropPath, GeluErf, LayerScale
from zoo.models.finetune import set_trainable_fraction
from zoo.registry import create_model, get_spec, list_models

# A narrow 4-stage instance: same code path as every member, a few thousand parameters.
TINY = dict(depths=(1, 1, 2, 1), widths=(8, 16, 24, 32), drop_path_rate=0.1)


def tiny_member(num_classes=3, image_size=32, **kw):
    return create_model("convnext_zepto", num_classes, image_size=image_size, **{**TINY, **kw})


def pixels(n, size, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


# ----------------------------------------------------------------------------- registry / layout
def test_members_registered_with_recipe():
    names = list_models("convnext_*")
    for n in ("convnext_zepto", "convnext_atto", "convnext_tiny", "convnext_small", "convnext_base", "convnext_large"):
        assert n in names
    for n in ("convnext_tiny", "convnext_small", "convnext_base", "convnext_large"):
        spec = get_spec(n)
        assert spec.family == "convnext" and spec.default_image_size == 96
        assert spec.defaults["weights"] is None
        phases = spec.recipe["phases"]
        assert [p["name"] for p in phases] == ["head", "finetune"]
        assert phases[0]["trainable_fraction"] == 0.0 and phases[1]["trainable_fraction"] == 0.3
    assert get_spec("convnext_zepto").recipe == {}  # trained from scratch: one phase
    # timm lists convnext_atto at 3.7M parameters with a 1000-class head: the same widths and depths here
    assert round(create_model("convnext_atto", 1000, image_size=32).count_params() / 1e5) == 37


def test_forward_raw_pixels_to_probabilities():
    m = tiny_member(num_classes=4)
    assert m.input.shape == (None, 32, 32, 3)
    assert [layer.name for layer in m.layers][1:] == ["backbone", "head_dropout", "head_dense", "probs"]
    p = m.predict(pixels(3, 32), verbose=0)
    assert p.shape == (3, 4) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    # The backbone takes raw pixels as well (normalisation inside) and returns pooled features.
    assert m.get_layer("backbone")(pixels(2, 32)).shape == (2, 32)
    head = m.get_layer("head_dense")
    assert isinstance(head.kernel_regularizer, keras.regularizers.L1L2)
    assert m.get_layer("head_dropout").rate == pytest.approx(0.35)


def test_normalisation_is_imagenet_inside_model():
    norm = tiny_member().get_layer("backbone").get_layer("imagenet_norm")
    out = np.asarray(norm(np.array([[[[0.485 * 255, 0.456 * 255, 0.406 * 255]]]], "float32")))
    np.testing.assert_allclose(out, 0.0, atol=1e-5)
    out = np.asarray(norm(np.array([[[[255.0, 255.0, 255.0]]]], "float32")))
    np.testing.assert_allclose(out.ravel(), [(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225], rtol=1e-5)


def test_resize_inside_model():
    m = tiny_member(image_size=24, resize_to=32)
    assert m.input.shape == (None, 24, 24, 3)
    assert m.get_layer("backbone").get_layer("resize").output.shape == (None, 32, 32, 3)


def test_too_small_input_is_a_user_error():
    with pytest.raises(ZooError, match="at least 32 px"):
        create_model("convnext_atto", 3, image_size=16)
    with pytest.raises(ZooError):
        tiny_member(dropout=1.5)


def test_keras_save_load_roundtrip(tmp_path):
    m = tiny_member()
    path = tmp_path / "model.keras"
    m.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    x = pixels(2, 32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), m.predict(x, verbose=0), atol=1e-6)


# ----------------------------------------------------------------------------- layers
def test_gelu_erf_equals_exact_gelu():
    x = np.linspace(-8, 8, 2001, dtype="float32")
    ours = np.asarray(GeluErf()(x))
    ref = np.asarray(keras.activations.gelu(x, approximate=False))
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_layer_scale_starts_tiny():
    ls = LayerScale(1e-6)
    y = np.asarray(ls(np.ones((2, 5), "float32")))
    np.testing.assert_allclose(y, 1e-6)
    assert ls.get_config()["init_value"] == 1e-6


def test_drop_path_per_sample_and_identity_at_inference():
    dp = DropPath(0.5, seed=1)
    x = np.ones((400, 3, 3, 2), "float32")
    np.testing.assert_array_equal(np.asarray(dp(x, training=False)), x)
    y = np.asarray(dp(x, training=True))
    per_sample = y.reshape(400, -1)
    # Each sample is either dropped entirely or kept and rescaled by 1/(1-rate).
    assert set(np.unique(per_sample)) <= {0.0, 2.0}
    assert np.all(per_sample.min(axis=1) == per_sample.max(axis=1))
    assert 0.35 < (per_sample[:, 0] == 0).mean() < 0.65
    dp.trainable = False  # frozen block: deterministic
    np.testing.assert_array_equal(np.asarray(dp(x, training=True)), x)


# ----------------------------------------------------------------------------- official weights
def _randomize(model, rng):
    """Make every weight matter: LayerScale and LayerNorm/bias values far from their inits."""
    for w in model.weights:
        if "layer_scale" in w.path:
            w.assign(rng.uniform(0.05, 0.3, w.shape).astype("float32"))
        elif w.path.endswith("gamma"):
            w.assign(rng.uniform(0.5, 1.5, w.shape).astype("float32"))
        elif w.path.endswith(("beta", "bias")):
            w.assign(rng.normal(0, 0.1, w.shape).astype("float32"))


def _save_legacy_h5(model, path):
    """Write the legacy (Keras 2 style) .h5 layout the official download uses."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)


@pytest.mark.parametrize("include_top", [False, True])
def test_official_weights_map_exactly(tmp_path, include_top):
    """keras.applications ConvNeXt-T weights -> our export-friendly layers: same features."""
    rng = np.random.default_rng(0)
    kw = {} if include_top else {"pooling": "avg"}
    ref = keras.applications.ConvNeXtTiny(
        weights=None, include_top=include_top, include_preprocessing=True, input_shape=(32, 32, 3), **kw
    )
    _randomize(ref, rng)
    if include_top:  # features = the head's GAP -> LayerNorm, before the 1000-class dense
        ref = keras.Model(ref.input, ref.get_layer("convnext_tiny_head_layernorm").output)
    path = tmp_path / ("convnext_tiny.h5" if include_top else "convnext_tiny_notop.h5")
    _save_legacy_h5(ref, path)

    ours = create_model("convnext_tiny", 8, image_size=32, weights=str(path))
    x = rng.uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    expected = ref.predict(x, verbose=0)
    got = ours.get_layer("backbone").predict(x, verbose=0)
    assert got.shape == expected.shape == (4, 768)
    assert np.abs(got - expected).max() <= 1e-5
    assert np.abs(expected).mean() > 0.1  # a non-degenerate comparison


def test_official_mapping_transposes_depthwise_kernel():

    k = np.arange(7 * 7 * 96, dtype="float32").reshape(7, 7, 1, 96)
    mapped = cw.map_official({"convnext_tiny_stage_0_block_0_depthwise_conv": [k, np.zeros(96, "float32")]})
    dw = mapped["stage0_block0_dwconv"][0]
    assert dw.shape == (7, 7, 96, 1)
    np.testing.assert_array_equal(dw[:, :, 5, 0], k[:, :, 0, 5])


def test_weights_of_another_size_are_refused(tmp_path):
    ref = keras.applications.ConvNeXtTiny(weights=None, include_top=False, pooling="avg", input_shape=(32, 32, 3))
    path = tmp_path / "convnext_tiny_notop.h5"
    _save_legacy_h5(ref, path)
    with pytest.raises(ZooError, match="different ConvNeXt size"):
        create_model("convnext_atto", 3, image_size=32, weights=str(path))


def test_weights_from_zoo_files(tmp_path):
    src = tiny_member(num_classes=5)
    _randomize(src, np.random.default_rng(1))
    src.save(tmp_path / "member.keras")
    src.save_weights(tmp_path / "member.weights.h5")
    x = pixels(2, 32)
    feats = src.get_layer("backbone").predict(x, verbose=0)
    # .keras: backbone copied into a member with a different head
    dst = tiny_member(num_classes=3, weights=str(tmp_path / "member.keras"))
    np.testing.assert_allclose(dst.get_layer("backbone").predict(x, verbose=0), feats, atol=1e-6)
    # .weights.h5: the whole member
    same = tiny_member(num_classes=5, weights=str(tmp_path / "member.weights.h5"))
    np.testing.assert_allclose(same.predict(x, verbose=0), src.predict(x, verbose=0), atol=1e-6)
    assert tiny_member(weights="none").get_layer("backbone").count_params() > 0  # CLI spelling of None
    with pytest.raises(ZooError, match="not found"):
        tiny_member(weights=str(tmp_path / "missing.h5"))
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(ZooError):
        tiny_member(weights=str(tmp_path / "junk.h5"))


def test_fetch_uses_verified_cache_without_network(tmp_path):
    blob = tmp_path / "src.bin"
    blob.write_bytes(b"convnext weights")
    sha = hashlib.sha256(blob.read_bytes()).hexdigest()
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "w.h5").write_bytes(b"convnext weights")
    # The origin is unreachable: a verified cached copy must be returned without trying it.
    got = cw.fetch("w.h5", "http://127.0.0.1:9/w.h5", sha, root=tmp_path, timeout=1.0)
    assert got == tmp_path / "models" / "w.h5"


def test_fetch_offline_is_a_clear_error(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "w.h5").write_bytes(b"tampered")
    with pytest.raises(ZooError, match="cannot download"):
        cw.fetch("w.h5", "http://127.0.0.1:9/w.h5", "0" * 64, root=tmp_path, timeout=1.0)


def test_imagenet_offline_error_and_unknown_variant(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setattr(cw, "BASE_URL", "http://127.0.0.1:9/")
    with pytest.raises(ZooError, match="cannot download convnext_tiny_notop.h5"):
        create_model("convnext_tiny", 3, image_size=32, weights="imagenet")
    with pytest.raises(ZooError, match="only for convnext_tiny"):
        tiny_member(weights="imagenet")
    assert cw.OFFICIAL["convnext_large"].file(False)[0] == "convnext_large_notop.h5"


# ----------------------------------------------------------------------------- export
def test_onnx_export_parity():
    import onnxruntime as ort

    from export.convert import keras_to_onnx  # tf2onnx.from_keras with an input signature

    m = tiny_member(image_size=24, resize_to=32, layer_scale_init=0.5)  # resize + non-trivial blocks
    # zepto's stride-2 stem: the one ConvNeXt layer setting tests/export/test_members.py leaves to this test
    assert m.get_layer("backbone").get_layer("stem_conv").strides == (2, 2)
    proto = keras_to_onnx(m, 24, opset=17)
    ops = {n.op_type for n in proto.graph.node}
    assert "Erf" in ops and not any("PartitionedCall" in o for o in ops)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = pixels(5, 24, seed=3)
    onnx_probs = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert np.abs(onnx_probs - m.predict(x, verbose=0)).max() <= 1e-4


# ----------------------------------------------------------------------------- fine-tuning
def _trainable_names(backbone):
    return [layer.name for layer in backbone.layers if layer.weights and layer.trainable]


def test_set_trainable_fraction_follows_convention():
    m = tiny_member()
    bb = m.get_layer("backbone")
    weighted = [layer.name for layer in bb.layers if layer.weights]
    n = len(weighted)

    assert set_trainable_fraction(m, 0.0) == 0
    assert _trainable_names(bb) == [] and bb.trainable_weights == []
    assert m.get_layer("head_dense").trainable and len(m.trainable_weights) == 2

    k = set_trainable_fraction(m, 0.3)
    assert k == int(np.ceil(0.3 * n)) and _trainable_names(bb) == weighted[-k:]
    assert weighted[-1] == "final_norm"
    # Frozen blocks run their drop-path deterministically; unfrozen ones still drop.
    assert not bb.get_layer("stage1_block0_drop").trainable
    assert bb.get_layer("stage3_block0_drop").trainable

    assert set_trainable_fraction(m, 1.0) == n and _trainable_names(bb) == weighted
    with pytest.raises(ZooError):
        set_trainable_fraction(m, 1.5)
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ZooError, match="backbone"):
        set_trainable_fraction(plain, 0.5)


def test_set_trainable_fraction_keeps_batchnorm_frozen():
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="c1")(inp)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Conv2D(4, 3, name="c2")(x)
    backbone = keras.Model(inp, keras.layers.GlobalAveragePooling2D()(x), name="backbone")
    outer_in = keras.Input((8, 8, 3))
    model = keras.Model(outer_in, keras.layers.Dense(2)(backbone(outer_in)))
    assert set_trainable_fraction(model, 1.0) == 3
    assert not backbone.get_layer("bn").trainable and backbone.get_layer("c1").trainable
    set_trainable_fraction(model, 1.0, freeze_batchnorm=False)
    assert backbone.get_layer("bn").trainable


def test_head_phase_trains_only_the_head():
    m = tiny_member()
    set_trainable_fraction(m, 0.0)
    m.compile(optimizer=keras.optimizers.Adam(1e-2), loss="categorical_crossentropy")
    before = [w.copy() for w in m.get_layer("backbone").get_weights()]
    head_before = m.get_layer("head_dense").get_weights()[0].copy()
    y = keras.utils.to_categorical(np.arange(8) % 3, 3)
    m.fit(pixels(8, 32), y, batch_size=4, epochs=1, verbose=0)
    for a, b in zip(before, m.get_layer("backbone").get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(head_before, m.get_layer("head_dense").get_weights()[0])


# ----------------------------------------------------------------------------- scale-out builds
def test_mixed_float16_build_and_step():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        m = tiny_member()
        assert m.get_layer("head_dense").compute_dtype == "float16"
        assert m.get_layer("probs").compute_dtype == "float32" and m.output.dtype == "float32"
        m.compile(optimizer="adam", loss="categorical_crossentropy")
        y = keras.utils.to_categorical(np.arange(8) % 3, 3)
        hist = m.fit(pixels(8, 32), y, batch_size=4, epochs=1, verbose=0)
        assert np.isfinite(hist.history["loss"][-1])
        p = m.predict(pixels(2, 32), verbose=0)
        assert p.dtype == np.float32
        np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-3)
    finally:
        keras.mixed_precision.set_global_policy("float32")


# MirroredStrategy: a tiny ConvNeXt trains through zoo.train on two logical CPUs in tests/zoo/test_train.py.
