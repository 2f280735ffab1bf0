"""Property-based tests: loaders and the config parser either succeed with a valid result or
raise the documented user error — never another exception (hypothesis; small example counts)."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from zoo.errors import ZooError

FAST = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


# ----------------------------------------------------------------------------- npz archives
DTYPES = st.sampled_from(
    [np.uint8, np.uint16, np.int8, np.int32, np.int64, np.float16, np.float32, np.float64, np.bool_, np.complex64]
)
LABEL_DTYPES = st.sampled_from([np.int64, np.int8, np.uint8, np.float32, np.float64, np.bool_])


def arrays(dtype, shape):
    elements = None
    if np.dtype(dtype).kind == "f":
        w = np.dtype(dtype).itemsize * 8
        elements = st.one_of(st.floats(-300, 300, width=w), st.sampled_from([float("nan"), float("inf"), 0.5, 1.0]))
    return hnp.arrays(dtype, shape, elements=elements)


@st.composite
def npz_contents(draw):
    n = draw(st.integers(0, 14))
    layout = draw(st.sampled_from(["an2dl", "medmnist", "junk"]))
    img_shape = draw(
        st.sampled_from(
            [
                (n, 6, 6, 3),
                (n, 5, 7),
                (n, 6, 6, 1),
                (n, 6, 6, 4),
                (n, 3, 6, 6),
                (n, 6),
                (n, 1, 1, 3),
                (n, 6, 6, 2),
                (n,),
                (n, 4, 4, 3, 2),
            ]
        )
    )
    images = draw(arrays(draw(DTYPES), img_shape))
    k = draw(st.sampled_from([n, n, n, max(0, n - 1), n + 1]))
    label_shape = draw(st.sampled_from([(k,), (k, 1), (k, 3), (k, 2, 2)]))
    labels = draw(
        hnp.arrays(draw(LABEL_DTYPES), label_shape, elements=None)
        if draw(st.booleans())
        else hnp.arrays(np.int64, label_shape, elements=st.integers(-2, 12))
    )
    out: dict[str, np.ndarray] = {}
    if layout == "an2dl":
        out = {"images": images, "labels": labels}
    elif layout == "medmnist":
        out = {"train_images": images, "train_labels": labels}
        if draw(st.booleans()):
            out |= {"val_images": images[: n // 2], "val_labels": labels[: n // 2]}
    else:
        out = {draw(st.sampled_from(["x", "images", "train_images", "labels"])): images}
    if draw(st.booleans()):
        out["class_names"] = np.array(
            draw(st.lists(st.sampled_from(["a", "b", "c", "d", "a"]), min_size=0, max_size=5)), dtype=str
        )
    return out


def check_dataset(d, size: int) -> None:
    assert d.class_names and all(isinstance(c, str) for c in d.class_names)
    assert len(d.splits["train"]) > 0
    for split in d.splits.values():
        assert split.images.dtype == np.uint8 and split.images.shape[1:] == (size, size, 3)
        assert split.labels.dtype == np.int64 and len(split.labels) == len(split.images)
        if len(split):
            assert 0 <= split.labels.min() and split.labels.max() < len(d.class_names)


@FAST
@given(npz_contents())
def test_npz_loads_into_a_valid_dataset_or_raises_zoo_error(contents):
    from zoo.data import load_dataset

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.npz"
        np.savez(path, **contents)
        try:
            d = load_dataset(str(path), 8)
        except ZooError as exc:
            assert str(exc)
            event("refused")
            return
        check_dataset(d, 8)
        event("loaded")


@FAST
@given(st.binary(max_size=64))
def test_random_bytes_as_npz_raise_zoo_error(data):
    from zoo.data import load_dataset

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.npz"
        path.write_bytes(data)
        with pytest.raises(ZooError):
            load_dataset(str(path), 8)


# ----------------------------------------------------------------------------- image decoding
def _seed_images() -> list[bytes]:
    from PIL import Image

    rng = np.random.default_rng(0)
    px = rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)
    out = []
    for fmt, mode in (
        ("PNG", "RGB"),
        ("JPEG", "RGB"),
        ("PNG", "P"),
        ("PNG", "RGBA"),
        ("BMP", "RGB"),
        ("TIFF", "RGB"),
        ("GIF", "P"),
        ("PNG", "I;16"),
    ):
        img = Image.fromarray(px)
        img = img.convert(mode) if mode != "I;16" else Image.fromarray(px[..., 0].astype(np.uint16) * 200)
        buf = io.BytesIO()
        img.save(buf, format=fmt)
        out.append(buf.getvalue())
    return out


SEEDS = _seed_images()


@st.composite
def image_like_bytes(draw):
    """Random bytes, or a real image with some bytes flipped, cut or inserted (the interesting failures)."""
    if draw(st.integers(0, 3)) == 0:
        return draw(st.binary(max_size=300))
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif kind == "cut":
            data = data[:pos]
        else:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


@FAST
@given(image_like_bytes(), st.sampled_from([None, 8, 16]))
def test_decode_returns_rgb_uint8_or_raises_bad_image(data, size):
    from zoo.data.images import BadImage, decode

    try:
        out = decode(data, size)
    except BadImage as exc:
        assert str(exc) and "\n" not in str(exc)
        event("refused")
        return
    event("decoded")
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    if size is not None:
        assert out.shape == (size, size, 3)


# ----------------------------------------------------------------------------- config parser
KEYS = {
    "": ["name", "output", "data", "train", "members", "evaluate", "ensemble", "distill", "export", "nmae"],
    "data": ["source", "image_size", "seed", "val_fraction", "test_fraction", "skip_bad_files", "imagesize"],
    "train": [
        "epochs",
        "batch_size",
        "optimizer",
        "learning_rate",
        "label_smoothing",
        "patience",
        "balance",
        "phases",
        "warmup_epochs",
        "weight_decay",
        "schedule",
        "trainable_fraction",
        "precision",
        "epoch",
    ],
    "members": ["member", "name", "params", "weights", "train", "colour"],
    "evaluate": ["splits", "shifted"],
    "ensemble": ["enabled", "methods", "calibrate", "tta"],
}
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 600),
    st.floats(-2, 2, allow_nan=False),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.sampled_from(["custom_cnn", "adamw", "sgd", "cosine", "vote", "stack", "synthetic:32", "../x"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6,
)


@st.composite
def configs(draw):
    cfg = {}
    for key in draw(st.lists(st.sampled_from(KEYS[""]), max_size=5, unique=True)):
        if key in ("data", "train", "evaluate", "ensemble") and draw(st.integers(0, 4)):
            cfg[key] = {k: draw(VALUES) for k in draw(st.lists(st.sampled_from(KEYS[key]), max_size=4, unique=True))}
        elif key == "members" and draw(st.integers(0, 3)):
            cfg[key] = [
                {k: draw(VALUES) for k in draw(st.lists(st.sampled_from(KEYS["members"]), max_size=3, unique=True))}
                for _ in range(draw(st.integers(0, 2)))
            ]
        else:
            cfg[key] = draw(VALUES)
    return cfg


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_config_parses_or_raises_zoo_error(data):
    from zoo import config

    try:
        cfg = config.parse(data)
    except ZooError as exc:
        assert str(exc)
        event("refused")
        return
    event("parsed")
    assert isinstance(cfg, config.PipelineConfig) and cfg.members
    assert 8 <= cfg.data.image_size <= 1024 and cfg.train.epochs >= 1


@settings(max_examples=30, deadline=None)
@given(st.text(max_size=200))
def test_random_toml_text_parses_or_raises_zoo_error(text):
    from zoo import config

    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "c.toml"
        p.write_text(text, encoding="utf-8", errors="surrogateescape")
        try:
            config.load(p)
        except ZooError:
            pass
