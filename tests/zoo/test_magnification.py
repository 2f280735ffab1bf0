"""Test-time magnification adaptation: the ruler reads a set's magnification whatever its class mix,
ignores colour, brightness, vignetting and noise, the adapter iterates to what was done and undoes it,
and the shift suite and `zoo evaluate --adapt-scale` apply it per acquisition."""

import json

import numpy as np
import pytest

from tests.helpers import smear_fields
from zoo import shift
from zoo.errors import ZooError
from zoo.magnification import MAX_STEPS, RULER, TOLERANCE, MagnificationAdapter, image_rulers, rescale


def _by_size(x):
    """A predictor that knows the two classes: the dark area in the middle."""
    dark = (x[:, 22:42, 22:42].astype(int).sum(-1) < 450).mean((1, 2)) > 0.35
    return np.stack([~dark, dark], 1).astype(float)


@pytest.fixture(scope="module")
def fields():
    return smear_fields(48)[0]


@pytest.fixture(scope="module")
def adapter():
    x, y = smear_fields(64, seed=1)
    return MagnificationAdapter.from_images(x, y, 2, predict=_by_size)


def test_ruler_reads_the_magnification_and_grows_with_it(fields, adapter):
    assert adapter.measure(fields) == pytest.approx(1.0, abs=0.05)  # another set of the same acquisition
    readings = [adapter.measure(rescale(fields, z)) for z in (0.7, 0.85, 1.2, 1.4)]
    assert readings == sorted(readings)
    assert readings[0] < 0.85 and readings[1] < 0.95 and readings[2] > 1.03 and readings[3] > 1 + TOLERANCE
    # measured short, never past the truth: cropping and mirrored borders bend the curve toward ×1
    assert readings[3] <= 1.4 + 0.03 and readings[0] >= 0.7 - 0.03


def test_rulers_of_a_set_are_read_once_and_the_same_after(fields, monkeypatch):
    from zoo import magnification

    magnification.RULERS.clear()  # whatever earlier tests measured
    calls = []
    real = magnification._image_rulers
    monkeypatch.setattr(magnification, "_image_rulers", lambda x, f: calls.append(len(x)) or real(x, f))
    x = fields[:20].copy()
    first = image_rulers(x)
    np.testing.assert_array_equal(image_rulers(x.copy()), first)  # the same pixels: looked up
    assert calls == [20]
    np.testing.assert_array_equal(image_rulers(x[:19]), first[:19])  # another set: measured
    image_rulers(x, fraction=0.3)  # another ruler setting: measured
    assert calls == [20, 19, 20]


def test_a_set_of_one_class_reads_as_the_training_mix(adapter):
    """The central cell moves the ruler; comparing each image with its own class's training images removes that."""
    x, y = smear_fields(64, seed=3)
    small, large = x[y == 0], x[y == 1]
    assert np.nanmedian(image_rulers(large)) > 1.1 * np.nanmedian(image_rulers(small))  # the confound is real
    for part in (small, large):
        assert adapter.measure(part) == pytest.approx(1.0, abs=0.05)
    assert adapter.measure(small, classes=np.ones(len(small), int)) < 1 - TOLERANCE  # wrong classes: misread


@pytest.mark.parametrize("name", ["channel_gain", "white_balance", "brightness", "gamma", "gaussian_noise"])
def test_ruler_ignores_colour_brightness_and_noise(fields, adapter, name):
    assert abs(adapter.measure(shift.corrupt(fields, name, 3, seed=0)) - 1.0) < TOLERANCE


def test_ruler_is_blind_to_vignetting(fields, adapter):
    """A grey falloff of light adds the same optical density to every channel: the chromatic ruler drops it.
    (The grey ruler read this as zooming in, and iterating would have followed it.)"""
    clean = adapter.measure(fields)
    for severity in (3, 5):
        assert adapter.measure(shift.corrupt(fields, "vignetting", severity, seed=0)) == pytest.approx(clean, abs=0.02)


def test_adapter_undoes_what_it_measures_and_leaves_an_unshifted_set_alone(fields, adapter):
    same, z, _ = adapter(fields)
    assert same is fields or np.array_equal(same, fields)
    assert abs(z - 1) < TOLERANCE
    zoomed = rescale(fields, 0.7)  # shrunk
    back, z, _ = adapter(zoomed)
    assert z < 1 - TOLERANCE
    centre = slice(16, 48)  # away from the mirrored border

    def err(x):
        return np.abs(x[:, centre, centre].astype(float) - fields[:, centre, centre]).mean()

    assert err(back) < 0.8 * err(zoomed)
    np.testing.assert_array_equal(rescale(fields, 1.0), fields)


@pytest.mark.parametrize("factor", [0.7, 1.4])
def test_adapter_iterates_to_the_magnification_that_one_reading_measures_short(fields, adapter, factor):
    """One reading is bent toward ×1 (cropping, mirrored borders); the fixed point lands near the truth."""
    zoomed = rescale(fields, factor)
    once = adapter.measure(zoomed)
    _, z, _ = adapter(zoomed)
    assert abs(np.log(z / factor)) < 0.5 * abs(np.log(once / factor))
    assert z == pytest.approx(factor, rel=0.05)


def test_adapter_predicts_classes_again_on_each_resampled_set(fields, adapter):
    seen = []

    def predict(x):
        seen.append(x.copy())
        return _by_size(x)

    counted = MagnificationAdapter(adapter.reference, adapter.size, predict=predict)
    zoomed = rescale(fields, 0.7)
    counted(zoomed)
    assert 2 <= len(seen) <= MAX_STEPS
    assert np.array_equal(seen[0], zoomed) and not np.array_equal(seen[1], zoomed)  # the resampled set
    seen.clear()
    counted(fields)
    assert len(seen) == 1  # within the tolerance: one reading, nothing resampled


@pytest.mark.parametrize("factor", [1.0, 0.7, 1.4])
def test_adapter_returns_the_probabilities_its_last_reading_computed_for_the_returned_set(fields, adapter, factor):
    """The caller scores the adapted set without predicting it again, and never with another set's probabilities."""
    seen = []

    def predict(x):
        seen.append(x.copy())
        return _by_size(x) * 0.5 + np.arange(len(x))[:, None] * 1e-3  # row-specific: a shuffle would show

    counted = MagnificationAdapter(adapter.reference, adapter.size, predict=predict)
    images, z, probs = counted(rescale(fields, factor))
    if probs is None:  # the iteration stopped on a step it applied: nothing was predicted on the returned set
        assert not any(np.array_equal(s, images) for s in seen)
    else:
        assert np.array_equal(seen[-1], images)
        np.testing.assert_array_equal(probs, predict(images))
    if factor == 1.0:
        assert probs is not None and len(seen) == 2  # one reading, then the check above


def test_rulers_round_trip_and_refuse_another_ruler_or_model(adapter):
    record = json.loads(json.dumps(adapter.to_dict()))
    back = MagnificationAdapter.from_dict(record, 2, 64)
    assert back.reference == pytest.approx(adapter.reference, abs=1e-3) and back.tolerance == adapter.tolerance
    assert record["ruler"] == RULER
    with pytest.raises(ZooError, match="another ruler"):
        MagnificationAdapter.from_dict({k: v for k, v in record.items() if k != "ruler"}, 2, 64)
    with pytest.raises(ZooError, match="do not match"):
        MagnificationAdapter.from_dict(record, 3, 64)
    with pytest.raises(ZooError, match="do not match"):
        MagnificationAdapter.from_dict(record, 2, 96)
    with pytest.raises(ZooError, match="positive numbers"):
        MagnificationAdapter.from_dict({**record, "reference_px": ["12", 3.0]}, 2, 64)


def test_adapter_refuses_what_it_cannot_measure(fields, adapter):
    assert adapter.measure(fields[:5]) is None  # too few images to be a set
    few, z, probs = adapter(fields[:5])
    assert z is None and probs is None and np.array_equal(few, fields[:5])  # not read, not predicted
    with pytest.raises(ZooError, match="measured at 64 px"):
        adapter.measure(smear_fields(16, size=48)[0])
    with pytest.raises(ZooError, match="no measurable texture"):
        MagnificationAdapter.from_images(np.full((32, 64, 64, 3), 200, np.uint8), np.zeros(32, int), 2)
    with pytest.raises(ZooError, match="square RGB"):
        image_rulers(np.zeros((20, 64, 48, 3), np.uint8))
    with pytest.raises(ZooError, match="its classes or a predictor"):
        MagnificationAdapter(adapter.reference, adapter.size).measure(fields)


def test_suite_adapts_each_acquisition_on_its_own(fields, adapter):
    """Within a cell, each corruption's images form one set; what was measured is recorded per cell."""
    from zoo.shift.suite import evaluate_suite

    seen = []

    def record(images):
        seen.append(len(images))
        return adapter(images)

    images = np.concatenate([fields, smear_fields(48, seed=2)[0]])
    labels = np.arange(len(images)) % 2
    predict = _by_size
    res = evaluate_suite(predict, images, labels, ["a", "b"], "geometry", (1, 5), adapt=record, max_images=None)
    names = shift.FAMILIES["geometry"]
    assert seen[0] == len(images) and sum(seen[1:3]) == len(images)  # the clean set, then one set per zoom
    for s in ("1", "5"):
        assert set(res["families"]["geometry"]["severities"][s]["adapt"]) == set(names)
    at5 = res["families"]["geometry"]["severities"]["5"]["adapt"]
    assert at5["zoom_in"] > 1 + TOLERANCE and at5["zoom_out"] < 1 - TOLERANCE
    assert abs(res["clean"]["adapt"] - 1) < TOLERANCE and "method" in res["adapt"]
    plain = evaluate_suite(predict, images, labels, ["a", "b"], "geometry", (1, 5), max_images=None)
    assert "adapt" not in plain and "adapt" not in plain["families"]["geometry"]["severities"]["5"]
    assert plain["clean"]["accuracy"] == res["clean"]["accuracy"]  # nothing to undo on the clean set


def test_suite_scores_an_adapted_set_with_the_adapters_probabilities_when_it_has_them(fields, adapter):
    """Each set is predicted once per reading, and once more only when the last reading was not of the returned set."""
    from zoo.magnification import Adapted
    from zoo.shift.suite import evaluate_suite

    calls = {"suite": 0, "adapter": 0}

    def predict(x):
        calls["suite"] += 1
        return _by_size(x)

    def adapter_predict(x):
        calls["adapter"] += 1
        return _by_size(x)

    counted = MagnificationAdapter(adapter.reference, adapter.size, predict=adapter_predict)
    returned = []

    def record(images):
        out = counted(images)
        returned.append(out)
        return out

    labels = np.arange(len(fields)) % 2
    res = evaluate_suite(predict, fields, labels, ["a", "b"], "geometry", (1, 5), adapt=record, max_images=None)
    assert calls["suite"] == sum(out.probs is None for out in returned)  # only what the adapter did not predict
    assert any(out.probs is not None for out in returned)
    plain = evaluate_suite(predict, fields, labels, ["a", "b"], "geometry", (1, 5), max_images=None)
    assert res["clean"] == {**plain["clean"], "adapt": res["clean"]["adapt"]}  # same scores from its probabilities
    with pytest.raises(ZooError, match="probabilities of shape"):
        evaluate_suite(
            predict, fields, labels, ["a", "b"], "geometry", (1,), adapt=lambda x: Adapted(x, 1.0, np.ones((1, 2)))
        )


def test_evaluate_adapt_scale_writes_its_own_results(tmp_path, synthetic_small, capsys, monkeypatch):
    from tests.helpers import TINY_CNN
    from zoo import runs
    from zoo.artifacts import read_card
    from zoo.cli import main
    from zoo.magnification import Adapted
    from zoo.train import train

    run = train(
        "custom_cnn",
        synthetic_small,
        tmp_path / "m",
        image_size=24,
        params=TINY_CNN,
        epochs=1,
        batch_size=32,
        tensorboard=False,
    )
    args = ["evaluate", str(run), "--data", "synthetic:160", "--shift-suite", "geometry", "--max-images", "40"]
    assert main([*args, "--adapt-scale"]) == 0
    assert "magnification adapted per acquisition" in capsys.readouterr().out
    res = json.loads((run / "eval" / "shift_suite_adapt_scale.json").read_text())
    assert res["adapt"]["size"] == 24 and set(res["families"]) == {"geometry"}
    assert set(res["families"]["geometry"]["severities"]["3"]["adapt"]) == {"zoom_in", "zoom_out"}
    assert "| geometry | zoom_in |" in (run / "eval" / "shift_suite_adapt_scale.md").read_text()
    assert not (run / "eval" / "shift_suite.json").exists()  # the plain results are a separate file
    summary = read_card(run)["metrics"]["shift_suite_adapt_scale"]
    assert summary["results"] == "eval/shift_suite_adapt_scale.json"
    # one split, measured as one set: its own result folder and card entry, with the reading
    plain = read_card(run)["metrics"].get("test")
    assert main(["evaluate", str(run), "--data", "synthetic:160", "--split", "test", "--adapt-scale"]) == 0
    assert "magnification read on the split" in capsys.readouterr().out
    assert (run / "eval" / "test-adaptscale" / "metrics.json").is_file()
    entry = read_card(run)["metrics"]["test-adaptscale"]
    assert "magnification" in entry and 0 <= entry["accuracy"] <= 1
    assert read_card(run)["metrics"].get("test") == plain  # the plain split result is not replaced
    # a set read three times (two readings, then scored): the model is loaded once for all of them
    loads, real_load = [], runs.load_model
    monkeypatch.setattr(runs, "load_model", lambda *a, **k: loads.append(1) or real_load(*a, **k))
    monkeypatch.setattr(
        MagnificationAdapter, "__call__", lambda self, x: (self.predict(x), self.predict(x), Adapted(x, 1.2, None))[-1]
    )
    assert main(["evaluate", str(run), "--data", "synthetic:160", "--split", "val", "--adapt-scale"]) == 0
    assert len(loads) == 1 and read_card(run)["metrics"]["val-adaptscale"]["magnification"] == 1.2
