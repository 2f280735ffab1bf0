"""Augmentation policies do what they promise, on tiny batches, eagerly and inside tf.data graphs."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from zoo.augment import OPS, PRESETS, available_policies, build_policy, canonical, describe, parse
from zoo.augment.spec import covered_families
from zoo.errors import ZooError

S = 16  # image side
B = 8  # batch size (== number of classes, so each label row identifies its source image)


@pytest.fixture(scope="module")
def batch():
    """Structured images (background, disc, texture) in 40..215 so zero-fill and clipping are visible."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:S, :S]
    disc = ((yy - S / 2 + 0.5) ** 2 + (xx - S / 2 + 0.5) ** 2) < (S / 3) ** 2
    images = np.empty((B, S, S, 3), np.float32)
    for i in range(B):
        bg = rng.uniform(150, 215, 3)
        fg = rng.uniform(40, 120, 3)
        img = np.where(disc[..., None], fg, bg) + rng.normal(0, 12, (S, S, 3))
        images[i] = np.clip(img, 40, 215)
    labels = np.eye(B, dtype=np.float32)
    return images, labels


def run(spec, images, labels, seed=1, num_classes=B):
    policy = build_policy(spec, num_classes=num_classes, seed=seed)
    out_x, out_y = policy(images, labels)
    return np.asarray(out_x), np.asarray(out_y)


def check_basic(x, y, shape, num_classes=B):
    assert x.shape == shape and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 255.0
    assert y.shape == (shape[0], num_classes) and y.dtype == np.float32
    np.testing.assert_allclose(y.sum(axis=1), 1.0, atol=1e-5)
    assert (y >= -1e-6).all()


def high_freq_energy(x):
    return (np.diff(x, axis=1) ** 2).mean(axis=(1, 2, 3)) + (np.diff(x, axis=2) ** 2).mean(axis=(1, 2, 3))


# ----------------------------------------------------------------------------- spec language
def test_available_lists_ops_and_presets():
    names = available_policies()
    for name in (
        "flip_rot90",
        "stain",
        "color",
        "blur",
        "noise",
        "jpeg",
        "randaugment",
        "cutout",
        "gridmask",
        "center_mask",
        "cutmix",
        "mixup",
        "course",
        "shift",
        "none",
    ):
        assert name in names
    text = describe()
    assert "randaugment:num_ops=2" in text and "shift =" in text


def test_spec_positional_keyword_stage_order_and_round_trip():
    ops = parse("mixup:0.3,flip_rot90,randaugment:3:0.4,stain:sigma=0.1:p=0.5,blur::0.9")
    assert [o.name for o in ops] == ["flip_rot90", "stain", "blur", "randaugment", "mixup"]  # stage order
    by = {o.name: dict(o.params) for o in ops}
    assert by["randaugment"] == {"num_ops": 3, "factor": 0.4, "p": 1.0}
    assert by["stain"] == {"sigma": 0.1, "p": 0.5}
    assert by["blur"] == {"sigma": OPS["blur"].params[0].default, "p": 0.9}  # empty slot keeps the default
    assert by["mixup"]["alpha"] == 0.3
    text = canonical(ops)
    assert canonical(parse(text)) == text
    policy = build_policy(text, num_classes=3, seed=4)
    d = policy.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert build_policy(d, num_classes=3).spec == policy.spec
    assert d["mixes_labels"] and d["policies"] == [o.name for o in ops]


def test_presets_expand_and_can_be_overridden_or_trimmed():
    assert parse("none") == [] and build_policy(None, num_classes=2).spec == "none"
    seed_ops = {o.name for o in parse("seed")}
    assert seed_ops == {"flip_rot90", "randaugment", "cutmix", "mixup", "gridmask", "cutout"}
    shift = {o.name: dict(o.params) for o in parse("shift")}
    assert {"flip_rot90", "stain", "color", "blur", "noise"} <= set(shift)
    tweaked = {o.name: dict(o.params) for o in parse("shift,blur:sigma=2.5,-jpeg")}
    assert "jpeg" not in tweaked
    assert tweaked["blur"] == {**shift["blur"], "sigma": 2.5}  # only the given parameter changes
    assert set(PRESETS) == {"none", "course", "shift", "shift_mixed"}
    # shift_mixed: the same ops at the same magnitudes, each drawn at most as often (same families)
    mixed = {o.name: dict(o.params) for o in parse("shift_mixed")}
    assert set(mixed) == set(shift)
    for name, params in mixed.items():
        assert {k: v for k, v in params.items() if k != "p"} == {k: v for k, v in shift[name].items() if k != "p"}
        assert params.get("p", 1.0) <= shift[name].get("p", 1.0)
    assert sum(p.get("p", 1.0) for p in mixed.values()) < sum(p.get("p", 1.0) for p in shift.values())
    assert covered_families("shift_mixed") == covered_families("shift")
    assert parse("seed") == parse("course")  # the preset's earlier name still reads


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ("sparkle", "unknown augmentation 'sparkle'"),
        ("flip_rot90,mixupp:0.2", "ops:"),
        ("stain:1.5", "outside 0..1"),
        ("stain:-0.1", "outside"),
        ("randaugment:2.5", "integer"),
        ("blur:abc", "not a number"),
        ("mixup:0.2:0.5:7", "takes alpha, p"),
        ("flip_rot90:1", "takes no parameters"),
        ("cutout:size=0.2", "no parameter 'size'"),
        ("shift:0.5", "preset 'shift' takes no parameters"),
        ("-sparkle", "unknown augmentation"),
    ],
)
def test_bad_specs_raise_zoo_error_listing_what_exists(spec, fragment):
    with pytest.raises(ZooError) as err:
        build_policy(spec, num_classes=3)
    assert fragment in str(err.value)
    if "unknown" in fragment:
        assert "flip_rot90" in str(err.value) and "shift" in str(err.value)


def test_bad_inputs_raise_zoo_error(batch):
    images, labels = batch
    with pytest.raises(ZooError):
        build_policy("flip_rot90", num_classes=0)
    with pytest.raises(ZooError, match="batches"):
        build_policy("flip_rot90", num_classes=B)(images[0], labels[0])


# ----------------------------------------------------------------------------- each op
def test_none_and_zero_probability_are_identity(batch):
    images, labels = batch
    for spec in ("none", "stain:0.5:0,noise:20:0,mixup:0.5:0"):
        x, y = run(spec, images, labels)
        np.testing.assert_array_equal(x, images)
        np.testing.assert_array_equal(y, labels)


def test_flip_rot90_moves_pixels_without_changing_them(batch):
    images, labels = batch
    x, y = run("flip_rot90", np.concatenate([images, images]), np.concatenate([labels, labels]))
    check_basic(x, y, (2 * B, S, S, 3))
    np.testing.assert_array_equal(y, np.concatenate([labels, labels]))
    changed = 0
    for i in range(2 * B):
        src = images[i % B]
        variants = [np.rot90(src, k) for k in range(4)] + [np.rot90(src, k).transpose(1, 0, 2) for k in range(4)]
        assert any(np.array_equal(x[i], v) for v in variants), "output is not a square symmetry of the input"
        np.testing.assert_array_equal(np.sort(x[i].ravel()), np.sort(src.ravel()))  # same pixel multiset
        changed += not np.array_equal(x[i], src)
    assert changed >= B // 2  # per-image randomness, not one rotation for the whole batch
    assert len({x[i].tobytes() for i in range(2 * B)}) > B  # the two copies of an image got different symmetries


def test_flip_rot90_on_non_square_images_keeps_shape(batch):
    images, labels = batch
    wide = np.concatenate([images, images[:, :, :4]], axis=2)  # 16 x 20
    x, _ = run("flip_rot90", wide, labels)
    assert x.shape == wide.shape
    for i in range(B):
        assert any(np.array_equal(x[i], v) for v in (wide[i], wide[i, ::-1], wide[i, :, ::-1], wide[i, ::-1, ::-1]))


def test_stain_and_colour_jitter_change_colour_statistics_not_structure(batch):
    images, labels = batch
    for spec in ("stain:0.4:1", "color:0.8:1"):
        x, y = run(spec, images, labels)
        check_basic(x, y, images.shape)
        np.testing.assert_array_equal(y, labels)
        mean_shift = np.abs(x.mean(axis=(1, 2)) - images.mean(axis=(1, 2))).max(axis=1)
        assert (mean_shift > 1.0).mean() >= 0.75, f"{spec}: channel means barely moved: {mean_shift}"
        # the picture is the same picture: luminance stays strongly correlated with the original
        for i in range(B):
            corr = np.corrcoef(x[i].mean(-1).ravel(), images[i].mean(-1).ravel())[0, 1]
            assert corr > 0.8, f"{spec}: image {i} lost its structure (corr {corr:.2f})"


def test_stain_is_exactly_invertible_at_zero_strength(batch):
    images, labels = batch
    x, _ = run("stain:0:1", images, labels)
    np.testing.assert_allclose(x, images, atol=0.05)  # OD round trip only


def test_blur_lowers_high_frequency_energy(batch):
    _, labels = batch
    rng = np.random.default_rng(1)
    images = rng.uniform(40, 215, (B, 32, 32, 3)).astype(np.float32)
    x, y = run("blur:6:1", images, labels)  # σ in [1.5, 6] px at 128 px = [0.375, 1.5] px at 32 px
    check_basic(x, y, images.shape)
    assert (high_freq_energy(x) < 0.8 * high_freq_energy(images)).all()
    np.testing.assert_allclose(x.mean(axis=(1, 2, 3)), images.mean(axis=(1, 2, 3)), rtol=0.02)  # blur keeps brightness


def test_noise_and_jpeg_perturb_pixels_moderately(batch):
    images, labels = batch
    x, y = run("noise:20:1", images, labels)
    check_basic(x, y, images.shape)
    diff = (x - images).std(axis=(1, 2, 3))
    assert (diff > 0).all() and (diff < 21).all()
    x, y = run("jpeg:10:1", images, labels)
    check_basic(x, y, images.shape)
    assert np.abs(x - images).mean() > 1.0
    assert np.corrcoef(x.ravel(), images.ravel())[0, 1] > 0.9


@pytest.mark.parametrize("spec", ["cutout:0.3:1", "gridmask:0.6:1"])
def test_cutout_and_gridmask_zero_fill_part_of_each_image(batch, spec):
    images, labels = batch
    x, y = run(spec, images, labels)
    check_basic(x, y, images.shape)
    zero = (x == 0).all(axis=-1)
    fractions = zero.mean(axis=(1, 2))
    assert (fractions > 0).mean() >= 0.75, f"too few images masked: {fractions}"
    assert fractions.max() < 0.95
    kept = ~zero
    np.testing.assert_allclose(x[kept], images[kept], atol=1e-4)  # everything else untouched


def test_center_mask_replaces_corners_with_the_border_background(batch):
    images, labels = batch
    x, y = run("center_mask:0.5:1", images, labels)
    check_basic(x, y, images.shape)
    for i in range(B):
        corners = np.stack([x[i, 0, 0], x[i, 0, -1], x[i, -1, 0], x[i, -1, -1]])
        np.testing.assert_allclose(corners, np.repeat(corners[:1], 4, 0))  # one fill colour
        frame = np.concatenate(
            [
                images[i, :2].reshape(-1, 3),
                images[i, -2:].reshape(-1, 3),
                images[i, :, :2].reshape(-1, 3),
                images[i, :, -2:].reshape(-1, 3),
            ]
        )
        assert frame.min(0).min() <= corners[0].min() and corners[0].max() <= frame.max(0).max()
        np.testing.assert_array_equal(x[i, S // 2, S // 2], images[i, S // 2, S // 2])  # the cell stays


def test_randaugment_changes_images_keeps_range(batch):
    images, labels = batch
    x, y = run("randaugment:2:0.6:1", images, labels)
    check_basic(x, y, images.shape)
    np.testing.assert_array_equal(y, labels)
    assert np.abs(x - images).mean() > 1.0


def test_mixup_mixes_images_and_labels_by_the_same_weight(batch):
    images, labels = batch  # label i is one-hot on i, so each soft label names its two sources
    x, y = run("mixup:0.4:1", images, labels)
    check_basic(x, y, images.shape)
    assert (y.max(axis=1) < 0.999).sum() >= 2, "expected some mixed labels"
    for i in range(B):
        w_self = y[i, i]
        others = np.delete(np.arange(B), i)
        if w_self > 0.999:
            np.testing.assert_allclose(x[i], images[i], atol=0.05)
            continue
        j = others[np.argmax(y[i, others])]
        np.testing.assert_allclose(y[i, i] + y[i, j], 1.0, atol=1e-5)
        np.testing.assert_allclose(x[i], y[i, i] * images[i] + y[i, j] * images[j], atol=0.05)


def test_cutmix_pastes_a_patch_with_area_weighted_labels(batch):
    images, labels = batch
    x, y = run("cutmix:1.0:1", images, labels)
    check_basic(x, y, images.shape)
    assert (y.max(axis=1) < 0.999).sum() >= 2, "expected some mixed labels"
    for i in range(B):
        own = (x[i] == images[i]).all(-1)
        if y[i, i] > 0.999:
            assert own.all()
            continue
        j = int(np.argmax(np.where(np.arange(B) == i, -1, y[i])))
        pasted = (x[i] == images[j]).all(-1) & ~own
        assert (own | pasted).all(), "every pixel comes from one of the two images"
        # the label weight is the patch area (Keras computes it from the real-valued box)
        assert abs(pasted.mean() - y[i, j]) < 0.15


def test_presets_keep_contract_and_soft_labels_sum_to_one(batch):
    images, labels = batch
    for preset in ("course", "shift", "shift_mixed"):
        x, y = run(preset, images, labels)
        check_basic(x, y, images.shape)


def test_integer_labels_are_one_hot_encoded(batch):
    images, _ = batch
    policy = build_policy("flip_rot90", num_classes=5, seed=0)
    _, y = policy(images, np.arange(B) % 5)
    np.testing.assert_array_equal(np.asarray(y), np.eye(5, dtype=np.float32)[np.arange(B) % 5])


def test_same_seed_same_augmentation(batch):
    images, labels = batch
    spec = "flip_rot90,stain:0.3,blur:1:0.5,noise:5:0.5,center_mask,mixup:0.2:0.5"
    a = run(spec, images, labels, seed=3)
    b = run(spec, images, labels, seed=3)
    c = run(spec, images, labels, seed=4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("spec", sorted(OPS) + ["course", "shift", "shift_mixed"])
def test_every_policy_runs_inside_tf_data_map_on_batches(batch, spec):
    """Graph mode with an unknown batch size (and a short last batch), as in the training pipeline."""
    import tensorflow as tf

    images, labels = batch
    if spec in OPS and any(p.name == "p" for p in OPS[spec].params):
        spec += ":p=1"
    policy = build_policy(spec, num_classes=B, seed=0)
    # Mixing ops pair each image with a shuffled partner; in a batch of 2 or 3 that shuffle is the
    # identity (nothing changes) with probability 1/2 or 1/6, so they get one batch of all 8.
    size = B if spec.split(":")[0] in ("cutmix", "mixup") else 3
    ds = (
        tf.data.Dataset.from_tensor_slices((images, labels))
        .batch(size)
        .map(policy, num_parallel_calls=tf.data.AUTOTUNE)
    )
    assert ds.element_spec[0].shape.as_list() == [None, S, S, 3]
    assert ds.element_spec[0].dtype == tf.float32 and ds.element_spec[1].dtype == tf.float32
    x, y = (np.concatenate(parts) for parts in zip(*[(a.numpy(), b.numpy()) for a, b in ds]))
    check_basic(x, y, images.shape)
    assert not np.array_equal(x, images)
    x2 = np.concatenate([a.numpy() for a, _ in ds])
    assert not np.array_equal(x, x2), "a second epoch should draw fresh augmentations"


# ----------------------------------------------------------------------------- shifted copy
def test_shifted_copy_is_deterministic_and_shifts_colour_and_sharpness(batch):
    from zoo.augment import shifted_copy

    images = batch[0].astype(np.uint8)
    a = shifted_copy(images, seed=7, severity=0.8)
    b = shifted_copy(images, seed=7, severity=0.8)
    c = shifted_copy(images, seed=8, severity=0.8)
    assert a.dtype == np.uint8 and a.shape == images.shape
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(shifted_copy(images, seed=7, severity=0.0), images)
    f = images.astype(np.float32)
    assert (
        np.abs(a.astype(np.float32).mean(axis=(0, 1, 2)) - f.mean(axis=(0, 1, 2))).max() > 1.0
    )  # systematic colour shift
    strong = shifted_copy(images, seed=7, severity=1.0).astype(np.float32)
    assert high_freq_energy(strong).mean() < high_freq_energy(f).mean()
    for i in range(len(images)):
        assert np.corrcoef(strong[i].mean(-1).ravel(), f[i].mean(-1).ravel())[0, 1] > 0.8


def test_shifted_copy_rejects_bad_input(batch):
    from zoo.augment import shifted_copy

    with pytest.raises(ZooError):
        shifted_copy(batch[0], seed=0, severity=0.5)  # float, not uint8
    with pytest.raises(ZooError):
        shifted_copy(batch[0].astype(np.uint8), seed=0, severity=2.0)


# ----------------------------------------------------------------------------- preview + CLI
def _tree(root, classes=("a", "b", "c"), n=3):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(30, 220, (20, 20, 3), dtype=np.uint8)).save(d / f"{c}{i}.png")
    return root


def test_preview_cli_writes_a_montage(tmp_path):
    from PIL import Image

    from zoo.commands import data as data_cmd

    root = _tree(tmp_path / "data")
    parser = argparse.ArgumentParser()
    data_cmd.register(parser.add_subparsers(dest="command"))
    out = tmp_path / "preview.png"
    args = parser.parse_args(
        [
            "data",
            "preview",
            "--data",
            str(root),
            "--augment",
            "flip_rot90,mixup:0.3:1",
            "--out",
            str(out),
            "--image-size",
            "16",
            "--samples",
            "3",
        ]
    )
    assert args.func(args) == 0
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100
    written = out.read_bytes()
    again = ["data", "preview", "--data", str(root), "--augment", "flip_rot90", "--out", str(out)]
    args = parser.parse_args(again)
    with pytest.raises(ZooError, match="file exists; pass --force"):
        args.func(args)  # an existing PNG (maybe the user's) is never overwritten without --force
    assert out.read_bytes() == written
    args = parser.parse_args(
        ["data", "preview", "--data", str(root), "--augment", "sparkle", "--out", str(out), "--force"]
    )
    with pytest.raises(ZooError, match="unknown augmentation"):
        args.func(args)


def test_random_state_round_trip_resumes_the_same_stream(batch):
    """A policy rebuilt in a new process and given the saved state continues exactly (resume)."""
    images, labels = batch
    spec = "flip_rot90,stain:0.3:0.5,randaugment:1:0.3:0.5,gridmask:0.5:0.5,cutout:0.2:0.5,mixup:0.2:0.5,cutmix:1:0.5"
    first = build_policy(spec, num_classes=B, seed=5)
    first(images, labels)  # advance every generator a little
    saved = json.loads(json.dumps(first.random_state()))
    assert len(saved["tf"]) >= 2 and len(saved["keras"]) >= 4  # policy generator + keras-cv; Keras seed generators
    expected = [np.asarray(t) for t in first(images, labels)]
    again = build_policy(spec, num_classes=B, seed=5)
    again.set_random_state(saved)
    got = [np.asarray(t) for t in again(images, labels)]
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    with pytest.raises(ZooError, match="does not match"):
        build_policy("flip_rot90", num_classes=B).set_random_state(saved)
