"""The ONNX Runtime predictor: files of any kind, bad inputs, CSV/JSON output, no TensorFlow.

These tests build a tiny ONNX model by hand (mean colour -> linear -> softmax) with zoo
metadata, so they exercise the predictor alone; tests/export/test_convert.py covers real exports.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from export import metadata as meta
from export.predictor import (
    format_predictions,
    load,
    predict_files,
    prepare_batch,
    select_providers,
    summarize,
    write_predictions,
)
from tests.helpers import REPO
from zoo.artifacts import write_card
from zoo.errors import ZooError

CLASSES = ["red", "green", "blue"]
SIZE = 16


PASSED = {"passed": True, "max_abs_diff": 0.0}


def tiny_model(parity: dict | None = PASSED, with_meta: bool = True, size: int = SIZE, extra: dict | None = None):
    """images (N,size,size,3) -> softmax(mean_rgb/255 · 20·I): the class is the dominant colour."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], axes=[1, 2], keepdims=0),
        helper.make_node("MatMul", ["mean", "w"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", size, size, 3])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 3])],
        initializer=[numpy_helper.from_array((np.eye(3) * 20 / 255).astype(np.float32), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if with_meta:
        props = meta.build(
            name="tiny", kind="member", classes=CLASSES, image_size=size, source_card_sha256="0" * 64, extra=extra
        )
        if parity is not None:
            props["zoo.parity"] = json.dumps(parity)
        meta.attach(model, props)
    onnx.checker.check_model(model)
    return model


def save(model, path: Path) -> Path:
    import onnx

    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return save(tiny_model(), tmp_path_factory.mktemp("model") / "tiny.onnx")


def colour(rgb, size=(30, 22)) -> np.ndarray:
    img = np.zeros((size[1], size[0], 3), np.uint8)
    img[...] = rgb
    return img


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    """Readable images of several formats/modes plus three broken files."""
    d = tmp_path_factory.mktemp("imgs")
    Image.fromarray(colour((250, 10, 10))).save(d / "a_red.png")
    Image.fromarray(colour((10, 240, 10), (64, 48))).save(d / "b_green.jpg", quality=95)
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[..., 2], rgba[..., 3] = 255, 255
    Image.fromarray(rgba, "RGBA").save(d / "c_blue_rgba.png")
    Image.fromarray(np.full((18, 18), 40000, np.uint16)).save(d / "d_gray16.png")  # 16-bit grayscale
    sub = d / "sub"
    sub.mkdir()
    Image.fromarray(colour((200, 30, 30), (40, 40))).save(sub / "e_red.bmp")
    good = (d / "a_red.png").read_bytes()
    (d / "x_truncated.png").write_bytes(good[: len(good) // 3])
    (d / "y_not_an_image.jpg").write_text("hello, I am text")
    (d / "z_empty.png").write_bytes(b"")
    (d / "notes.txt").write_text("ignored: not an image extension")
    return d


def test_predict_array_any_size_and_single_image(model_path):
    m = load(model_path, "cpu")
    assert m.classes == CLASSES and m.image_size == SIZE and m.metadata["kind"] == "member"
    assert m.providers == ["CPUExecutionProvider"]
    batch = np.stack([colour((255, 0, 0)), colour((0, 255, 0)), colour((0, 0, 255))])  # 22x30, resized to 16
    p = m.predict(batch)
    assert p.shape == (3, 3) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-5)
    assert p.argmax(1).tolist() == [0, 1, 2]
    single = m.predict(colour((0, 0, 255)).astype(np.float32))  # float 0..255, one image
    assert single.shape == (1, 3) and single.argmax() == 2
    np.testing.assert_allclose(single[0], p[2], atol=1e-5)
    assert m.predict(np.zeros((0, SIZE, SIZE, 3), np.uint8)).shape == (0, 3)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((16, 16), np.uint8), "one image"),
        (np.zeros((2, 16, 16, 1), np.uint8), "3 colour channels"),
        (np.zeros((2, 16, 16, 4), np.uint8), "3 colour channels"),
        (np.zeros((1, 2, 3, 4, 3), np.uint8), "one image"),
        (np.full((1, 16, 16, 3), np.nan, np.float32), "NaN"),
        (np.full((1, 16, 16, 3), 300, np.int32), "0..255"),
        (np.zeros((1, 16, 16, 3), bool), "dtype"),
    ],
)
def test_bad_arrays_are_clear_errors(model_path, bad, message):
    m = load(model_path, "cpu")
    with pytest.raises(ZooError, match=message):
        m.predict(bad)


def test_prepare_batch_matches_file_decoding():
    import io

    from zoo.data.images import decode

    img = np.random.default_rng(0).integers(0, 255, (37, 29, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    np.testing.assert_array_equal(prepare_batch(img, 16)[0], decode(buf.getvalue(), 16).astype(np.float32))


def test_folder_with_broken_files_csv_and_json(model_path, image_folder, tmp_path):
    model, records = predict_files(model_path, [image_folder], batch_size=2, provider="cpu")
    by_name = {Path(r["file"]).name: r for r in records}
    assert "notes.txt" not in by_name  # folders are searched for image extensions only
    assert len(records) == 8
    ok = {n: r["label"] for n, r in by_name.items() if r["status"] == "ok"}
    assert ok == {
        "a_red.png": "red",
        "b_green.jpg": "green",
        "c_blue_rgba.png": "blue",
        "d_gray16.png": ok.get("d_gray16.png"),  # a tie, checked below
        "e_red.bmp": "red",
    }
    # the 16-bit grey decodes to equal RGB channels, so the colour model gives every class 1/3
    grey = by_name["d_gray16.png"]["probabilities"]
    assert grey == pytest.approx(dict.fromkeys(CLASSES, 1 / 3), abs=1e-5)
    bad = {n: r["error"] for n, r in by_name.items() if r["status"] == "error"}
    assert set(bad) == {"x_truncated.png", "y_not_an_image.jpg", "z_empty.png"}
    assert all(bad.values()) and "empty" in bad["z_empty.png"]

    out_csv = write_predictions(records, model.classes, tmp_path / "preds.csv", model)
    rows = list(csv.DictReader(out_csv.open()))
    assert [r["status"] for r in rows].count("error") == 3 and len(rows) == 8
    red = next(r for r in rows if r["file"].endswith("a_red.png"))
    assert red["class"] == "red" and abs(sum(float(red[f"p_{c}"]) for c in CLASSES) - 1) < 1e-4
    assert float(red["confidence"]) == pytest.approx(float(red["p_red"]), abs=1e-6)
    broken = next(r for r in rows if r["file"].endswith("y_not_an_image.jpg"))
    assert broken["class"] == "" and broken["error"]

    out_json = write_predictions(records, model.classes, tmp_path / "preds.json", model)
    doc = json.loads(out_json.read_text())
    assert doc["model"]["classes"] == CLASSES and doc["model"]["image_size"] == SIZE
    preds = {Path(p["file"]).name: p for p in doc["predictions"]}
    assert preds["b_green.jpg"]["class"] == "green" and set(preds["b_green.jpg"]["probabilities"]) == set(CLASSES)
    assert preds["z_empty.png"]["status"] == "error" and "error" in preds["z_empty.png"]

    with pytest.raises(ZooError, match=".csv or .json"):
        write_predictions(records, model.classes, tmp_path / "preds.xlsx")


def test_missing_file_is_reported_and_empty_input_is_an_error(model_path, tmp_path):
    _, records = predict_files(model_path, [tmp_path / "nope.png"], provider="cpu")
    assert records[0]["status"] == "error" and "no such file" in records[0]["error"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ZooError, match="no images"):
        predict_files(model_path, [tmp_path / "empty"], provider="cpu")


def test_corrupt_truncated_and_foreign_models(model_path, tmp_path):
    data = model_path.read_bytes()
    (tmp_path / "trunc.onnx").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.onnx").write_bytes(b"\x00\x01not a protobuf" * 10)
    (tmp_path / "empty.onnx").write_bytes(b"")
    for name in ("trunc.onnx", "garbage.onnx"):
        with pytest.raises(ZooError, match="not a valid ONNX model"):
            load(tmp_path / name, "cpu")
    with pytest.raises(ZooError, match="empty file"):
        load(tmp_path / "empty.onnx", "cpu")
    with pytest.raises(ZooError, match="no such model"):
        load(tmp_path / "missing.onnx", "cpu")
    foreign = save(tiny_model(with_meta=False), tmp_path / "foreign.onnx")
    with pytest.raises(ZooError, match="not a zoo export"):
        load(foreign, "cpu")


def test_unverified_model_refused_unless_allowed(tmp_path, caplog):
    path = save(tiny_model(parity=None), tmp_path / "unverified.onnx")
    with pytest.raises(ZooError, match="no parity record"):
        load(path, "cpu")
    m = load(path, "cpu", allow_unverified=True)
    assert not m.verified and "UNVERIFIED" in caplog.text
    failed = save(tiny_model(parity={"passed": False}), tmp_path / "failed.onnx")
    with pytest.raises(ZooError, match="parity check failed"):
        load(failed, "cpu", allow_unverified=True)


def test_providers():
    import onnxruntime as ort

    assert select_providers("cpu") == ["CPUExecutionProvider"]
    auto = select_providers("auto")
    assert auto[-1] == "CPUExecutionProvider"
    assert auto[0] == (
        "CUDAExecutionProvider" if "CUDAExecutionProvider" in ort.get_available_providers() else "CPUExecutionProvider"
    )
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(ZooError, match="not available"):
            select_providers("cuda")
    with pytest.raises(ZooError):
        select_providers("tpu")


def test_export_folder_resolution(tmp_path):
    folder = tmp_path / "exp"
    folder.mkdir()
    save(tiny_model(), folder / "model.onnx")
    with pytest.raises(ZooError, match="incomplete export folder"):
        load(folder, "cpu")
    card = {"kind": "export", "name": "tiny", "classes": CLASSES, "input": {"image_size": SIZE}}
    write_card(folder, card)
    assert load(folder, "cpu").classes == CLASSES
    with pytest.raises(ZooError, match="no model.int8.onnx"):
        load(folder, "cpu", variant="int8")
    save(tiny_model(parity={"passed": True, "max_abs_diff": 1e-9}), folder / "model.onnx")  # changed after the card
    with pytest.raises(ZooError, match="modified after the card"):
        load(folder, "cpu")
    write_card(folder, {**card, "kind": "member"})
    with pytest.raises(ZooError, match="not an export"):
        load(folder, "cpu")


def test_cli_predict_and_no_tensorflow(model_path, image_folder, tmp_path):
    """``zoo predict`` through the real CLI in a fresh interpreter: output written, TensorFlow never imported."""
    out = tmp_path / "p.json"
    code = (
        "import sys; from zoo.cli import main; "
        f"rc = main(['-q', 'predict', {str(model_path)!r}, {str(image_folder)!r}, '--out', {str(out)!r}, '--provider', 'cpu']); "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow was imported'; "
        "sys.exit(rc)"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "5 of 8 image(s) classified" in r.stderr
    assert len(json.loads(out.read_text())["predictions"]) == 8


def test_predict_adapt_scale_reads_the_set_with_the_rulers_in_the_file(tmp_path):
    """`zoo predict --adapt-scale`: the file's rulers read a magnified set as magnified, with no training data."""
    from tests.helpers import smear_fields
    from zoo.magnification import TOLERANCE, MagnificationAdapter, rescale

    train, _ = smear_fields(64, seed=1)
    # the tiny model calls every pink field "red": the rulers are the training images', all of class red
    rulers = MagnificationAdapter.from_images(train, np.zeros(len(train), int), len(CLASSES)).to_dict()
    with_rulers = save(tiny_model(size=64, extra={"magnification": rulers}), tmp_path / "rulers.onnx")
    plain = save(tiny_model(size=64), tmp_path / "plain.onnx")
    fields, _ = smear_fields(32, seed=2)
    for name, images in (("same", fields), ("zoomed", rescale(fields, 0.7))):
        (tmp_path / name).mkdir()
        for i, im in enumerate(images):
            Image.fromarray(im).save(tmp_path / name / f"{i:02d}.png")
    _, same = predict_files(with_rulers, [tmp_path / "same"], provider="cpu", adapt_scale=True)
    model, zoomed = predict_files(with_rulers, [tmp_path / "zoomed"], provider="cpu", adapt_scale=True)
    assert abs(same[0]["magnification"] - 1) < TOLERANCE
    assert all(r["status"] == "ok" and r["magnification"] < 1 - TOLERANCE for r in zoomed)
    assert "magnification read ×0." in summarize(zoomed)
    assert "magnification" not in predict_files(with_rulers, [tmp_path / "same"], provider="cpu")[1][0]
    with pytest.raises(ZooError, match="no magnification rulers"):
        predict_files(plain, [tmp_path / "same"], provider="cpu", adapt_scale=True)
    older = {k: v for k, v in rulers.items() if k != "ruler"}  # as exported before the chromatic ruler
    older_file = save(tiny_model(size=64, extra={"magnification": older}), tmp_path / "older.onnx")
    with pytest.raises(ZooError, match="another ruler.*re-export"):
        predict_files(older_file, [tmp_path / "same"], provider="cpu", adapt_scale=True)


def test_cli_predict_bad_model_exits_2(tmp_path, capsys):
    from zoo.cli import main

    (tmp_path / "bad.onnx").write_bytes(b"\x08\x07truncated")
    assert main(["-q", "predict", str(tmp_path / "bad.onnx"), str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("zoo: error:") and "bad.onnx" in err


def test_csv_to_stdout(model_path, image_folder):
    model, records = predict_files(model_path, [image_folder / "a_red.png"], provider="cpu")
    text = format_predictions(records, model.classes, "csv")
    header, row = text.strip().splitlines()
    assert header.split(",")[:4] == ["file", "status", "class", "confidence"]
    assert ",ok,red," in row


def test_folder_walk_skips_hidden_files_and_folders(tmp_path):
    from export.predictor import list_inputs
    from tests.helpers import write_images

    shown = write_images(tmp_path / "imgs" / "sub", 2)
    write_images(tmp_path / "imgs" / ".thumbnails", 2, seed=1)
    (tmp_path / "imgs" / ".hidden.png").write_bytes(shown[0].read_bytes())
    assert list_inputs([tmp_path / "imgs"]) == sorted(shown)
