"""The in-graph resize computes what the loader computes (PIL's antialiased bilinear), and exports."""

import numpy as np
import pytest
from PIL import Image

from zoo.models.resize import PilBilinearResize, pil_bilinear_matrix


@pytest.mark.parametrize(("src", "dst"), [(128, 64), (96, 64), (128, 96), (64, 96), (100, 37)])
def test_matches_the_loaders_pil_resize_within_one_grey_level(src, dst):
    import keras

    img = np.random.default_rng(src + dst).integers(0, 256, (src, src, 3), dtype=np.uint8)
    pil = np.asarray(Image.fromarray(img).resize((dst, dst), Image.Resampling.BILINEAR, reducing_gap=None))
    ours = np.asarray(PilBilinearResize(dst, dst)(img[None].astype(np.float32)))[0]
    assert ours.shape == (dst, dst, 3)
    assert np.abs(ours - pil).max() <= 1.0 + 1e-4  # PIL rounds to uint8 after each pass; we stay float
    if dst < src:  # Keras' bilinear (no antialias) is what members used to see: far from the loader
        plain = np.asarray(keras.layers.Resizing(dst, dst)(img[None].astype(np.float32)))[0]
        assert np.abs(plain - pil).mean() > 5 * np.abs(ours - pil).mean()


def test_weights_are_normalised_and_widen_when_downscaling():
    down, up = pil_bilinear_matrix(128, 64), pil_bilinear_matrix(64, 128)
    np.testing.assert_allclose(down.sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(up.sum(1), 1.0, atol=1e-6)
    assert (down > 0).sum(1).max() == 4 and (up > 0).sum(1).max() == 2  # support 2 at 2x down, 1 up
    np.testing.assert_array_equal(pil_bilinear_matrix(32, 32), np.eye(32, dtype=np.float32))
    with pytest.raises(ValueError):
        pil_bilinear_matrix(0, 4)


def test_a_member_behind_the_resize_exports_with_parity(tmp_path):
    import keras
    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx

    from zoo.runs import resized_input

    inner = keras.Sequential(
        [keras.Input((16, 16, 3)), keras.layers.Conv2D(2, 3), keras.layers.GlobalAveragePooling2D()]
    )
    model = resized_input(inner, 24)
    assert model.input_shape == (None, 24, 24, 3)
    spec = (tf.TensorSpec((None, 24, 24, 3), tf.float32, name="images"),)
    proto, _ = tf2onnx.convert.from_function(
        tf.function(lambda x: model(x, training=False)), input_signature=spec, opset=17
    )
    resize_ops = [n for n in proto.graph.node if n.op_type == "MatMul"]
    assert len(resize_ops) == 2
    from export.quantize import float_nodes

    assert {n.name for n in resize_ops} <= set(float_nodes(proto))  # int8 export keeps the resize in float
    x = np.random.default_rng(0).uniform(0, 255, (3, 24, 24, 3)).astype(np.float32)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(
        sess.run(None, {sess.get_inputs()[0].name: x})[0], model.predict(x, verbose=0), atol=1e-4
    )
