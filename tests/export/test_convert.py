"""Member export: parity, metadata, int8/fp16, the CLI, and failures that leave nothing behind.

Members are tiny untrained ``custom_cnn`` (32 px) saved as run folders by hand
(``tests/export/conftest.py``); their final softmax kernels are scaled up so the random members
make confident, distinct predictions (top-1 is meaningful).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import EXPORT_SIZE as SIZE
from tests.helpers import keras_probs, onnx_probs
from zoo.artifacts import card_identity, card_sha256, read_card
from zoo.errors import ZooError

# ----------------------------------------------------------------------------- member export


@pytest.fixture(scope="module")
def member_export(runs, tmp_path_factory):
    from export.convert import export_model

    _, (m1, _) = runs
    out = tmp_path_factory.mktemp("exports") / "m1"
    return export_model(m1, out, dtype="fp16", quantize="int8", calibration_size=64)


def test_member_export_parity_and_card(member_export, runs, dataset):
    import onnx

    _, (m1, _) = runs
    card = read_card(member_export)
    assert card["kind"] == "export" and card["source"]["card_sha256"] == card_sha256(m1)
    assert card["source"]["identity_sha256"] == card_identity(read_card(m1))
    assert set(card["files"]) == {"model.onnx", "model.fp16.onnx", "model.int8.onnx"}
    fp32 = card["parity"]["fp32"]
    assert fp32["passed"] and fp32["max_abs_diff"] <= 1e-4 and fp32["top1_agreement"] >= 0.999
    assert fp32["images"] == len(dataset.split("val")) and card["data"]["split"] == "val"
    for name in card["files"]:
        onnx.checker.check_model(str(member_export / name), full_check=True)
    # independent check on fresh images of the stored file against Keras
    x = np.random.default_rng(5).integers(0, 256, (12, SIZE, SIZE, 3)).astype(np.float32)
    diff = np.abs(onnx_probs(member_export / "model.onnx", x) - keras_probs(m1, x)).max()
    assert diff <= 1e-4


def test_reduced_precision_variants_report_accuracy_change(member_export):
    card = read_card(member_export)
    for name in ("fp16", "int8"):
        rep = card["parity"][name]
        assert rep["passed"] is None  # reported, not gated
        assert rep["finite"] and 0.0 <= rep["top1_agreement"] <= 1.0
        assert isinstance(rep["accuracy_change"], float) and "vs_fp32" in rep
        assert card["variants"][name]["bytes"] > 0
    assert card["parity"]["fp16"]["max_abs_diff"] < 0.05  # fp16 stays close
    assert card["variants"]["fp16"]["bytes"] < card["variants"]["fp32"]["bytes"]
    ops = {n.op_type for n in __import__("onnx").load(str(member_export / "model.int8.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_metadata_round_trip(member_export, runs, dataset):
    import onnx

    import export
    from export import metadata as meta

    _, (m1, _) = runs
    raw = meta.as_dict(onnx.load(str(member_export / "model.onnx")))
    md = meta.parse(raw, "model.onnx")
    assert md["classes"] == list(dataset.class_names)
    assert md["input"]["image_size"] == SIZE and md["input"]["range"] == [0, 255]
    assert md["kind"] == "member" and md["variant"] == "fp32" and md["source_card_sha256"] == card_sha256(m1)
    assert "resize" in md["preprocessing"] and md["version"] and md["parity"]["passed"] is True
    # class rulers from the training images, for `zoo predict --adapt-scale` with the file alone
    assert md["magnification"]["size"] == SIZE and len(md["magnification"]["reference_px"]) == len(md["classes"])
    model = export.load(member_export, "cpu")
    assert model.classes == list(dataset.class_names) and model.metadata["name"] == "m1" and model.verified
    # any-size uint8 input is resized like file decoding, then matches Keras on the resized pixels
    from zoo.data.images import resize_array

    big = np.random.default_rng(6).integers(0, 256, (3, 45, 45, 3), dtype=np.uint8)
    np.testing.assert_allclose(model.predict(big), keras_probs(m1, resize_array(big, SIZE)), atol=1e-4)
    q = export.load(member_export, "cpu", variant="int8")
    assert q.metadata["variant"] == "int8" and q.metadata["calibration"]["images"] == 64
    assert q.predict(big).shape == (3, dataset.num_classes)


def test_reference_evaluator_agrees(member_export):
    """onnx.reference (pure numpy) as an independent second runtime on the exported file."""
    from onnx.reference import ReferenceEvaluator

    x = np.random.default_rng(7).integers(0, 256, (3, SIZE, SIZE, 3)).astype(np.float32)
    ref = ReferenceEvaluator(str(member_export / "model.onnx")).run(None, {"images": x})[0]
    np.testing.assert_allclose(ref, onnx_probs(member_export / "model.onnx", x), atol=1e-5)


# ----------------------------------------------------------------------------- failures


def test_parity_failure_leaves_nothing(runs, tmp_path, monkeypatch):
    from export import convert

    _, (m1, _) = runs
    real = convert.keras_reference

    def skewed(*a, **k):  # a reference the ONNX model cannot match: parity must fail
        probs, note = real(*a, **k)
        return np.roll(probs, 1, axis=1), note

    monkeypatch.setattr(convert, "keras_reference", skewed)
    out = tmp_path / "bad"
    with pytest.raises(ZooError, match="fp32 parity failed"):
        convert.export_model(m1, out)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_bad_export_requests(runs, member_export, tmp_path):
    from export.convert import export_model

    _, (m1, _) = runs
    with pytest.raises(ZooError, match="already exists"):
        export_model(m1, member_export)
    with pytest.raises(ZooError, match="give a folder"):
        export_model(m1, tmp_path / "model.onnx")
    with pytest.raises(ZooError, match="already an export"):
        export_model(member_export, tmp_path / "again")
    with pytest.raises(ZooError, match="opset"):
        export_model(m1, tmp_path / "x", opset=7)
    with pytest.raises(ZooError, match="int8"):
        export_model(m1, tmp_path / "x", quantize="int4")
    with pytest.raises(ZooError, match="incomplete"):
        export_model(tmp_path, tmp_path / "y")


def test_cli_export(runs, tmp_path, capsys):
    from zoo.cli import main

    _, (m1, _) = runs
    out = tmp_path / "cli"
    assert main(["-q", "export", str(m1), "--out", str(out), "--limit", "8"]) == 0
    text = capsys.readouterr().out
    assert "fp32" in text and "top-1 agreement" in text
    assert read_card(out)["parity"]["fp32"]["images"] == 8
    assert main(["-q", "export", str(m1), "--out", str(out)]) == 2  # exists, no --force


def test_export_with_given_arrays(runs, tmp_path):
    """Parity and calibration images passed as arrays (any size, resized), no labels: no accuracy, still gated."""
    from export.convert import export_model

    _, (m1, _) = runs
    rng = np.random.default_rng(9)
    images = rng.integers(0, 256, (10, 40, 40, 3), dtype=np.uint8)
    calib = rng.integers(0, 256, (20, SIZE, SIZE, 3), dtype=np.uint8)
    out = export_model(m1, tmp_path / "arr", images=images, quantize="int8", calibration_data=calib)
    card = read_card(out)
    assert card["data"] == {"source": "array", "images": 10}
    assert card["parity"]["fp32"]["passed"] and "accuracy" not in card["parity"]["fp32"]
    assert "accuracy" not in card["parity"]["int8"] and card["parity"]["int8"]["images"] == 10
    with pytest.raises(ZooError, match="3 colour channels"):
        export_model(m1, tmp_path / "bad", images=np.zeros((2, SIZE, SIZE, 1), np.uint8))
    assert not (tmp_path / "bad").exists()


def test_large_model_path_uses_external_data(runs, tmp_path, monkeypatch):
    """Models past protobuf's 2 GiB keep weights in '<file>.data'; exercised by lowering the threshold."""
    import onnx

    import export
    from export import convert

    monkeypatch.setattr(convert, "LARGE_MODEL_BYTES", 0)
    _, (m1, _) = runs
    out = convert.export_model(m1, tmp_path / "ext", quantize="int8", calibration_size=32, dtype="fp16")
    card = read_card(out)
    assert {"model.onnx.data", "model.int8.onnx.data"} <= set(card["files"])
    assert card["variants"]["fp32"]["external_data"] == "model.onnx.data" and card["parity"]["fp32"]["passed"]
    stub = onnx.load(str(out / "model.onnx"), load_external_data=False)
    assert any(t.data_location == onnx.TensorProto.EXTERNAL for t in stub.graph.initializer)
    x = np.random.default_rng(4).integers(0, 256, (4, SIZE, SIZE, 3), dtype=np.uint8)
    np.testing.assert_allclose(export.load(out, "cpu").predict(x), keras_probs(m1, x), atol=1e-4)
    assert export.load(out, "cpu", variant="int8").metadata["variant"] == "int8"
