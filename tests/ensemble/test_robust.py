"""Robust-by-construction pieces (issue 10 item 3): input normalisation in the graph, AugMix,
test-time BatchNorm adaptation."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import TINY_CNN
from zoo.errors import ZooError


def _smear_like(n=12, size=24, seed=0) -> np.ndarray:
    """Bright background with darker coloured blobs (values stay well inside 0..255)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.empty((n, size, size, 3), np.float32)
    for i in range(n):
        cy, cx, r = rng.uniform(6, size - 6, 2).tolist() + [rng.uniform(3, 7)]
        blob = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r)[..., None]
        bg = rng.uniform(170, 200, 3)
        fg = rng.uniform(50, 120, 3)
        out[i] = np.where(blob, fg, bg) + rng.normal(0, 4, (size, size, 3))
    return out


def _norm(mode, x):
    from zoo.models.normalization import InputNorm

    return np.asarray(InputNorm(mode)(x))


@pytest.mark.parametrize("mode", ["grayworld", "channel_std", "od_std"])
def test_per_channel_gain_is_nearly_invisible_after_input_norm(mode):
    x = _smear_like()
    gains = np.random.default_rng(1).uniform(0.8, 1.2, (len(x), 1, 1, 3)).astype(np.float32)
    before, after = _norm(mode, x), _norm(mode, x * gains)
    raw_change = np.abs(x * gains - x).mean() / x.std()
    change = np.abs(after - before).mean() / before.std()
    assert raw_change > 0.1  # the gain does move the raw pixels
    assert change < 0.01, f"{mode}: normalised input moved by {change:.4f} of its spread"
    # while image content still differs between images
    assert np.abs(before - before[::-1]).mean() / before.std() > 0.3


def test_channel_std_removes_offsets_and_od_std_removes_gamma():
    x = _smear_like()
    offset = np.random.default_rng(2).uniform(-30, 30, (len(x), 1, 1, 3)).astype(np.float32)
    np.testing.assert_allclose(_norm("channel_std", x + offset), _norm("channel_std", x), atol=1e-3)
    gamma = 255.0 * np.power((x + 1.0) / 256.0, 1.3) - 1.0  # gamma on the (x+1)/256 scale: exact in OD
    np.testing.assert_allclose(_norm("od_std", gamma), _norm("od_std", x), atol=1e-2)  # eps floor only
    # and "none" is really no protection
    assert np.abs(_norm("none", x * 1.2) - _norm("none", x)).max() > 10


def test_unknown_input_norm_is_a_user_error():
    from zoo.registry import create_model

    with pytest.raises(ZooError, match="input_norm 'lab' is not one of"):
        create_model("custom_cnn", 3, 24, input_norm="lab", **TINY_CNN)


def test_member_with_input_norm_trains_reloads_and_exports_with_fp32_parity(tmp_path):
    from export.convert import export_model
    from zoo.artifacts import read_card
    from zoo.data import load_dataset
    from zoo.runs import load_model
    from zoo.train import train

    data = load_dataset("synthetic:48", 24, val_fraction=0.25, test_fraction=0.0)
    params = {**TINY_CNN, "input_norm": "od_std"}
    run = train(
        "custom_cnn",
        data,
        tmp_path / "run",
        image_size=24,
        params=params,
        epochs=1,
        batch_size=16,
        tensorboard=False,
        evaluate_splits=("val",),
    )
    model = load_model(run)
    assert model.get_layer("input_norm").mode == "od_std"
    x = data.split("val").images[:6].astype(np.float32)
    # the reloaded model keeps its colour constancy: a white-balance change barely reaches its first layer...
    import keras

    normalised = keras.Model(model.input, model.get_layer("input_norm").output)
    balanced = (x * np.float32([0.85, 0.95, 0.9])).astype(np.float32)
    a, b = normalised.predict(x, verbose=0), normalised.predict(balanced, verbose=0)
    assert np.abs(balanced - x).mean() / x.std() > 0.05 and np.abs(a - b).mean() / a.std() < 0.02
    # ...nor its output
    assert np.abs(model.predict(x, verbose=0) - model.predict(balanced, verbose=0)).max() < 0.1
    out = export_model(run, tmp_path / "onnx", data=data, limit=8)
    parity = read_card(out)["variants"]["fp32"]["parity"]
    assert parity["passed"] is True and parity["max_abs_diff"] <= 1e-4


def test_augmix_changes_colour_keeps_labels_range_and_is_seeded():
    from zoo.augment import build_policy

    x = _smear_like(16)
    labels = np.arange(16) % 4

    def run(seed):
        imgs, lab = build_policy("augmix:0.8", num_classes=4, seed=seed)(x, labels)
        return imgs.numpy(), lab.numpy()

    a, lab = run(0)
    b, _ = run(0)
    c, _ = run(1)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 1.0
    np.testing.assert_array_equal(lab, np.eye(4)[labels])
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 255
    shift = np.abs(a.mean(axis=(1, 2)) - x.mean(axis=(1, 2))).mean()
    assert shift > 3.0  # channel means move
    # structure survives: the blob is still darker than the background in every image
    assert all(np.corrcoef(a[i].mean(-1).ravel(), x[i].mean(-1).ravel())[0, 1] > 0.8 for i in range(16))


def test_adapt_batchnorm_matches_target_statistics_and_restores_momentum():
    import keras

    from zoo.adapt import adapt_batchnorm
    from zoo.registry import create_model

    model = create_model("custom_cnn", 4, 24, **TINY_CNN)
    target = _smear_like(100) * [1.2, 0.8, 1.0]
    stem = keras.Model(model.input, model.get_layer("stem_conv").output)
    acts = stem.predict(target.astype(np.float32), verbose=0)
    bn = model.get_layer("stem_bn")
    before = bn.moving_mean.numpy().copy()
    adapt_batchnorm(model, target, batch_size=32)
    np.testing.assert_allclose(bn.moving_mean.numpy(), acts.mean(axis=(0, 1, 2)), atol=1e-3)
    np.testing.assert_allclose(bn.moving_variance.numpy(), acts.var(axis=(0, 1, 2)), rtol=0.05, atol=1e-4)
    assert np.abs(bn.moving_mean.numpy() - before).max() > 1e-3 and bn.momentum == pytest.approx(0.9)


def test_adapt_batchnorm_refuses_models_without_batchnorm():
    import keras

    from zoo.adapt import adapt_batchnorm

    inp = keras.Input((8, 8, 3))
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(inp)))
    with pytest.raises(ZooError, match="no BatchNormalization"):
        adapt_batchnorm(model, np.zeros((4, 8, 8, 3), np.float32))


def test_evaluate_adapt_bn_writes_its_own_report(trained_run, synthetic_small, monkeypatch):
    from zoo import adapt
    from zoo.artifacts import read_card
    from zoo.evaluate import evaluate

    seen = []
    real = adapt.adapt_batchnorm

    def spy(model, images, **kwargs):
        seen.append(images)
        return real(model, images, **kwargs)

    monkeypatch.setattr(adapt, "adapt_batchnorm", spy)
    before = np.load(trained_run / "probs" / "val.npy")
    m = evaluate(trained_run, dataset=synthetic_small, split="val", adapt_bn=True)
    val = synthetic_small.split("val").images
    assert len(seen) == 1 and np.array_equal(seen[0], val)  # adapted on the scored images themselves
    assert (trained_run / "eval" / "val-adaptbn" / "metrics.json").exists()
    metrics = read_card(trained_run)["metrics"]
    assert metrics["val-adaptbn"]["accuracy"] == pytest.approx(m["accuracy"])
    assert m["nll"] != pytest.approx(metrics["val"]["nll"], abs=1e-6)  # new BN statistics, new probabilities
    np.testing.assert_array_equal(np.load(trained_run / "probs" / "val.npy"), before)  # stored probs untouched


def test_robust_fit_rows_keep_each_shifted_copy_in_its_images_fold():
    from ensemble.cv import make_folds
    from ensemble.robust import extend_fit_rows

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 10)
    clean = rng.dirichlet(np.ones(3), (2, 30))
    shifted = [rng.dirichlet(np.ones(3), (2, 30)) for _ in range(2)]
    folds = make_folds(y, 5, 0)
    probs, labels, ext = extend_fit_rows(clean, y, folds, shifted)
    assert probs.shape == (2, 90, 3) and np.array_equal(labels, np.tile(y, 3))
    np.testing.assert_array_equal(probs[:, 30:60], shifted[0])
    for (tr, te), (etr, ete) in zip(folds, ext):
        assert set(ete % 30) == set(te) and set(etr % 30) == set(tr)  # image i's copies score where image i does
        assert not set(etr) & set(ete)
    with pytest.raises(ZooError, match="do not match"):
        extend_fit_rows(clean, y, folds, [clean[:, :10]])


def test_robust_fit_weights_move_towards_the_member_that_survives_the_shift():
    from ensemble.voting import fit_vote

    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 400)
    sharp, soft = np.eye(4)[y] * 0.96 + 0.01, np.eye(4)[y] * 0.6 + 0.1  # member 0 better on clean
    clean = np.stack([sharp, soft])
    wrong = np.eye(4)[(y + 1) % 4] * 0.96 + 0.01  # member 0 collapses on the shifted copy, member 1 holds
    shifted = np.stack([wrong, soft])
    w_clean = fit_vote(clean, y)["weights"]
    w_robust = fit_vote(np.concatenate([clean, shifted], axis=1), np.tile(y, 2))["weights"]
    assert w_clean[0] > 0.9 and w_robust[1] > 0.5


def _accuracies(w, mp, y, n):
    right = np.tensordot(w, mp, axes=(0, 0)).argmax(-1) == y
    return right[:n].mean(), right[n:].mean()


def test_clean_floor_fit_keeps_the_floor_and_is_the_most_robust_vote_that_does():
    from ensemble.voting import fit_vote, fit_weights_floor, simplex_grid
    from tests.helpers import member_probs

    n = 300
    y = np.random.default_rng(0).integers(0, 4, n)
    wrong = (y + 1) % 4
    # member 0: best clean, confidently wrong on half of each shifted copy; member 1: robust, weaker
    # clean; member 2: in between. Rows: the clean block, then two shifted copies (robust.extend_fit_rows).
    fragile = np.where(np.arange(n) % 2 == 0, wrong, y)
    mp = np.stack(
        [
            np.concatenate(
                [member_probs(y, 4.0, seed=1), member_probs(fragile, 4.0, seed=2), member_probs(fragile, 4.0, seed=3)]
            ),
            np.concatenate([member_probs(y, 1.2, seed=4), member_probs(y, 1.2, seed=5), member_probs(y, 1.2, seed=6)]),
            np.concatenate([member_probs(y, 2.0, seed=7), member_probs(y, 1.0, seed=8), member_probs(y, 1.0, seed=9)]),
        ]
    ).astype(np.float64)
    labels = np.tile(y, 3)
    # every weight vector in multiples of 1/8, enumerated here independently of simplex_grid
    grid = [np.array([i, j, 8 - i - j]) / 8 for i in range(9) for j in range(9 - i)]
    assert len(simplex_grid(3, 8)) == len(grid) == 45 and np.allclose(simplex_grid(3, 8).sum(1), 1)
    acc = [_accuracies(g, mp, labels, n) for g in grid]
    best_clean = max(c for c, _ in acc)
    for floor in (0.80, 0.95, best_clean):
        w = fit_weights_floor(mp, labels, 3, floor)
        clean, shifted = _accuracies(w, mp, labels, n)
        assert clean >= floor
        assert shifted >= max(s for c, s in acc if c >= floor) - 1e-12
    loose, strict = fit_weights_floor(mp, labels, 3, 0.80), fit_weights_floor(mp, labels, 3, best_clean)
    assert _accuracies(loose, mp, labels, n)[1] > _accuracies(strict, mp, labels, n)[1]  # robustness costs clean
    # a floor nothing reaches: the most accurate clean weights
    assert _accuracies(fit_weights_floor(mp, labels, 3, 0.99999), mp, labels, n)[0] == best_clean
    spec = fit_vote(mp, labels, clean_floor=0.80, copies=3)
    np.testing.assert_allclose(spec["weights"], loose)
    with pytest.raises(ZooError, match="equal blocks"):
        fit_weights_floor(mp[:, :-1], labels[:-1], 3, 0.9)


def test_convnext_takes_input_norm_in_place_of_imagenet_statistics():
    from zoo.registry import create_model

    small = {"depths": (1, 1), "widths": (8, 16), "kernel_size": 3}
    model = create_model("convnext_zepto", 3, 32, input_norm="channel_std", **small)
    names = [layer.name for layer in model.get_layer("backbone").layers]
    assert "input_norm" in names and "imagenet_norm" not in names
    x = _smear_like(4, 32)
    p, p_gain = model.predict(x, verbose=0), model.predict(x * [1.2, 0.85, 1.0] + 10.0, verbose=0)
    np.testing.assert_allclose(p, p_gain, atol=1e-3)  # gain and offset never reach the first convolution


@pytest.mark.parametrize("member", ["mobilenet_v3", "mobilenet_v3_tiny"])
def test_mobilenet_takes_input_norm_in_place_of_its_fixed_scaling(member):
    from zoo.registry import create_model

    model = create_model(member, 3, 32, input_norm="od_std", width=0.5, head_width=16)
    names = [layer.name for layer in model.layers]
    assert "input_norm" in names and "scale" not in names
    x = _smear_like(4, 32)
    p, p_gain = model.predict(x, verbose=0), model.predict(np.clip(x * [1.15, 0.85, 1.0], 0, 255), verbose=0)
    np.testing.assert_allclose(p, p_gain, atol=1e-3)  # a per-channel gain never reaches the first convolution
    plain = create_model(member, 3, 32, width=0.5, head_width=16)
    assert "scale" in [layer.name for layer in plain.layers] and "input_norm" not in [
        layer.name for layer in plain.layers
    ]


def test_build_ensemble_with_fit_shift_records_the_families_and_prefers_the_robust_member(tmp_path, monkeypatch):
    import json

    from ensemble import robust
    from ensemble.build import EnsembleConfig, build_ensemble
    from tests.helpers import make_run, member_probs
    from zoo.artifacts import read_card

    rng = np.random.default_rng(3)
    y = {"val": rng.integers(0, 4, 160), "test": rng.integers(0, 4, 80)}
    sharp = make_run(tmp_path / "runs" / "sharp", {s: (member_probs(v, 3.0, seed=1), v) for s, v in y.items()})
    steady = make_run(tmp_path / "runs" / "steady", {s: (member_probs(v, 1.5, seed=2), v) for s, v in y.items()})
    # on shifted copies the sharp member is confidently wrong, the steady one unchanged
    shifted_sharp = member_probs((y["val"] + 1) % 4, 3.0, seed=3)
    shifted = np.stack([shifted_sharp, member_probs(y["val"], 1.5, seed=4)]).astype(np.float64)
    monkeypatch.setattr(robust, "shifted_member_probs", lambda source, split, fams, sevs, seed, bs: [shifted, shifted])

    plain = build_ensemble([sharp, steady], tmp_path / "plain", config=EnsembleConfig(folds=4))
    robust_out = build_ensemble(
        [sharp, steady], tmp_path / "robust", config=EnsembleConfig(folds=4, fit_shift=["colour"])
    )

    def weights(spec: dict) -> dict[str, float]:  # members fitted to weight ~0 are left out of ensemble.json
        kept = dict(zip([m["name"] for m in spec["members"]], spec["weights"]))
        return {name: kept.get(name, 0.0) for name in ("sharp", "steady")}

    w_plain = weights(json.loads((plain / "ensemble.json").read_text()))
    spec = json.loads((robust_out / "ensemble.json").read_text())
    w_robust = weights(spec)
    assert w_plain["sharp"] > w_plain["steady"] and w_robust["steady"] > w_robust["sharp"]
    card = read_card(robust_out)
    assert card["fit_families"] == ["colour"] and "colour" in card["augment_families"]
    assert spec["fit"]["shifted_copies"]["families"] == ["colour"] and spec["fit"]["shifted_copies"]["rows"] == 2 * 160
    assert card["metrics"]["val"]["n"] == 160  # the headline scores the clean rows only
    # The comparison scores the clean images and their shifted copies apart: pooled, the copies would pass for a
    # val split three times its size, with intervals and McNemar tests over rows that are not independent.
    from zoo.confusions import confused_pairs

    rows = json.loads((robust_out / "comparison.json").read_text())
    val = {r["model"]: r for r in rows if r["split"] == "val"}
    copies = {r["model"]: r for r in rows if r["split"] == "val_shifted"}
    assert set(val) == set(copies) and all(r["n"] == 160 for r in val.values())
    assert all(r["n"] == 2 * 160 and "ci_low" not in r and "mcnemar_p" not in r for r in copies.values())
    assert all("ci_low" in r and "mcnemar_p" in r for r in val.values())
    sharp_val = np.load(sharp / "probs" / "val.npy")
    assert val["sharp"]["accuracy"] == pytest.approx(float((sharp_val.argmax(1) == y["val"]).mean()))
    assert copies["sharp"]["accuracy"] == pytest.approx(float((shifted_sharp.argmax(1) == y["val"]).mean()))
    classes = read_card(sharp)["classes"]
    assert val["sharp"]["confused"] == confused_pairs(sharp_val, y["val"], classes)
    assert "confused" not in val["sharp +T"]  # a temperature does not move the errors
    table = (robust_out / "comparison.md").read_text()
    assert "## split `val` (160 images)" in table and "## split `val_shifted` (320 shifted images)" in table
    assert "### Where the errors are (`val`)" in table and "### Where the errors are (`val_shifted`)" not in table
    with pytest.raises(ZooError, match="unknown shift famil"):
        build_ensemble([sharp, steady], tmp_path / "bad", config=EnsembleConfig(fit_shift=["lab"]))

    from ensemble import compare

    stack_calls = []

    def spy_stack(*args, **kwargs):
        stack_calls.append(kwargs)
        return fit_stack(*args, **kwargs)

    fit_stack = compare.fit_stack
    monkeypatch.setattr(compare, "fit_stack", spy_stack)
    floored = build_ensemble(
        [sharp, steady], tmp_path / "floor", config=EnsembleConfig(folds=4, fit_shift=["colour"], fit_clean_floor=0.5)
    )
    # the floor is the vote's: the stack row beside it is a comparison, fitted once per fold on the same rows
    assert stack_calls and all(c["clean_floor"] is None and not c["select"] for c in stack_calls)
    assert all(c["copies"] == 3 for c in stack_calls)  # the clean rows and their two shifted copies
    spec = json.loads((floored / "ensemble.json").read_text())
    assert "clean accuracy >= 0.5" in spec["fit"]["weights"]
    assert read_card(floored)["metrics"]["val"]["n"] == 160
    stack = build_ensemble(
        [sharp, steady],
        tmp_path / "stack_floor",
        config=EnsembleConfig(method="stack", folds=4, fit_shift=["colour"], fit_clean_floor=0.5, calibrate=True),
    )
    spec = json.loads((stack / "ensemble.json").read_text())
    chosen = spec["selection"]["chosen"]
    assert spec["shift_weight"] == chosen["shift_weight"] and spec["learner_params"]["C"] == chosen["C"]
    assert len(spec["selection"]["candidates"]) == 18 and "clean accuracy >= 0.5" in spec["selection"]["rule"]
    assert read_card(stack)["ensemble"]["shift_weight"] == chosen["shift_weight"]
    assert read_card(stack)["fit_families"] == ["colour"] and read_card(stack)["metrics"]["val"]["n"] == 160
    for bad in (
        EnsembleConfig(fit_clean_floor=0.9),  # no shifted rows to be robust on
        EnsembleConfig(method="stack", fit_clean_floor=0.9),  # a stack too needs the shifted rows
        EnsembleConfig(fit_shift=["colour"], fit_clean_floor=1.5),
    ):
        with pytest.raises(ZooError, match="clean floor"):
            build_ensemble([sharp, steady], tmp_path / "bad_floor", config=bad)
    assert not (tmp_path / "bad_floor").exists()
