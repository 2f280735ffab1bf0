"""ONNX export: members and whole ensembles as one graph, parity, metadata, int8/fp16, failures.

Members are tiny untrained ``custom_cnn`` (widths (8, 16), 32 px) saved as run folders by
hand; ensembles are folders in the ``ensemble`` package's file format (``ensemble.json``)
built here from two members and numpy weights/coefficients. The final softmax kernels are
scaled up so the random members make confident, distinct predictions (top-1 is meaningful).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from export.ensemble_graph import TTA_TRANSFORMS, Combination, combine_numpy, tta_nodes, tta_numpy
from zoo.artifacts import card_sha256, read_card, write_card, write_json, write_npy
from zoo.errors import ZooError

SIZE = 32
DATA = "synthetic:160"
TINY = {"widths": (8, 16), "depths": (1, 1), "stem_width": 8}


@pytest.fixture(scope="module")
def dataset():
    from zoo.data import load_dataset

    return load_dataset(DATA, SIZE)


def make_run(folder: Path, dataset, seed: int) -> Path:
    import keras

    from zoo.registry import create_model

    keras.utils.set_random_seed(seed)
    model = create_model("custom_cnn", dataset.num_classes, SIZE, **TINY)
    dense = model.get_layer("probs")
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel * 40.0, bias])  # confident, varied outputs from an untrained net
    folder.mkdir(parents=True)
    model.save(folder / "model.keras")
    val = dataset.split("val")
    write_npy(folder / "probs" / "val.npy", model.predict(val.images.astype(np.float32), verbose=0))
    write_npy(folder / "probs" / "val_labels.npy", val.labels)
    write_card(
        folder,
        {
            "kind": "member",
            "name": folder.name,
            "member": "custom_cnn",
            "params": TINY,
            "classes": list(dataset.class_names),
            "input": {
                "image_size": SIZE,
                "channels": 3,
                "range": [0, 255],
                "color": "RGB",
                "preprocessing": "inside model",
            },
            "data": {**dataset.summary(), "seed": 0},
            "metrics": {},
        },
    )
    return folder


def make_ensemble(folder: Path, members: list[Path], spec: dict) -> Path:
    """An ensemble folder in the ``ensemble`` package's format (ensemble.json + card)."""
    cards = [read_card(m) for m in members]
    folder.mkdir(parents=True)
    write_json(
        folder / "ensemble.json",
        {
            "format": 1,
            **spec,
            "members": [
                {
                    "name": c["name"],
                    "member": c["member"],
                    "path": f"../{m.name}",
                    "abs_path": str(m),
                    "card_sha256": card_sha256(m),
                }
                for m, c in zip(members, cards)
            ],
            "classes": cards[0]["classes"],
            "input": cards[0]["input"],
        },
    )
    write_card(
        folder,
        {
            "kind": "ensemble",
            "name": folder.name,
            "method": spec["method"],
            "classes": cards[0]["classes"],
            "input": cards[0]["input"],
            "data": cards[0]["data"],
            "metrics": {},
        },
    )
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory, dataset):
    root = tmp_path_factory.mktemp("zoo")
    return root, [make_run(root / "m1", dataset, 1), make_run(root / "m2", dataset, 2)]


def keras_probs(run: Path, images: np.ndarray) -> np.ndarray:
    from zoo.runs import load_model

    return load_model(run).predict(np.asarray(images, np.float32), verbose=0)


def onnx_probs(path: Path, images: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["images"] and len(sess.get_outputs()) == 1
    return sess.run(None, {"images": np.asarray(images, np.float32)})[0]


# ----------------------------------------------------------------------------- combination math (no Keras)
def test_combination_matches_ensemble_package():
    combine_mod = pytest.importorskip("ensemble.combine")
    rng = np.random.default_rng(0)
    mp = rng.dirichlet(np.ones(5) * 0.3, size=(3, 40))  # (M, N, C), some tiny probabilities
    specs = [
        {"method": "vote", "weights": [0.5, 0.3, 0.2], "temperature": 1.7, "eps": 1e-7},
        {
            "method": "stack",
            "coef": rng.normal(size=(5, 15)).tolist(),
            "intercept": rng.normal(size=5).tolist(),
            "features": "log",
            "temperature": 0.8,
            "eps": 1e-7,
        },
        {
            "method": "stack",
            "coef": rng.normal(size=(5, 15)).tolist(),
            "intercept": rng.normal(size=5).tolist(),
            "features": "prob",
            "temperature": 1.0,
            "eps": 1e-6,
        },
    ]
    for spec in specs:
        ours = combine_numpy(list(mp), Combination.from_spec(spec, 3, 5))
        np.testing.assert_allclose(ours, combine_mod.combine(spec, mp), atol=1e-6)


def test_combination_graph_matches_numpy():
    """The ONNX combination ops alone (members replaced by graph inputs) against the numpy formula."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from export.ensemble_graph import combination_nodes

    rng = np.random.default_rng(1)
    mp = rng.dirichlet(np.ones(4) * 0.5, size=(2, 30)).astype(np.float32)
    combos = [
        Combination("vote", 2, 4, weights=[0.25, 0.75], temperature=2.0),
        Combination("vote", 2, 4, weights=[0.5, 0.5]),
        Combination(
            "stack", 2, 4, coef=rng.normal(size=(4, 8)), intercept=rng.normal(size=4), transform="log", temperature=0.7
        ),
        Combination("stack", 2, 4, coef=rng.normal(size=(4, 8)), intercept=rng.normal(size=4), transform="prob"),
    ]
    for comb in combos:
        nodes, inits = combination_nodes(["p0", "p1"], comb)
        graph = helper.make_graph(
            nodes,
            "c",
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["n", 4]) for n in ("p0", "p1")],
            [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["n", 4])],
            initializer=inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        onnx.checker.check_model(model, full_check=True)
        out = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, {"p0": mp[0], "p1": mp[1]}
        )[0]
        np.testing.assert_allclose(out, combine_numpy(list(mp), comb), atol=1e-5)


@pytest.mark.parametrize("opset", [17, 18])
def test_tta_graph_matches_numpy_and_ensemble_tta(opset):
    import onnxruntime as ort
    from onnx import TensorProto, helper

    x = np.random.default_rng(2).uniform(0, 255, (2, 5, 5, 3)).astype(np.float32)
    nodes, inits = tta_nodes(list(TTA_TRANSFORMS), opset)
    graph = helper.make_graph(
        nodes,
        "t",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["n", 5, 5, 3])],
        [helper.make_tensor_value_info("ens_tta_batch", TensorProto.FLOAT, None)],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    out = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"images": x})[
        0
    ]
    expected = np.concatenate([tta_numpy(t, x) for t in TTA_TRANSFORMS])
    np.testing.assert_array_equal(out, expected)
    try:
        from ensemble.tta import apply
    except ImportError:
        return
    for t in TTA_TRANSFORMS:
        np.testing.assert_array_equal(tta_numpy(t, x), apply(t, x))


def test_combination_rejects_bad_arrays():
    with pytest.raises(ZooError, match="coef must have shape"):
        Combination("stack", 2, 3, coef=np.zeros((3, 5)), intercept=np.zeros(3))
    with pytest.raises(ZooError, match="weights"):
        Combination("vote", 2, 3, weights=[1, -1])
    with pytest.raises(ZooError, match="temperature"):
        Combination("vote", 2, 3, temperature=0)
    with pytest.raises(ZooError, match="method"):
        Combination("boost", 2, 3)
    with pytest.raises(ZooError, match="TTA"):
        Combination("vote", 2, 3, tta=["mirror"])


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


# ----------------------------------------------------------------------------- ensembles
def _ensemble_check(folder: Path, out: Path, runs, dataset, spec: dict):
    from export.convert import export_model

    root, members = runs
    export_model(folder, out)
    card = read_card(out)
    assert card["parity"]["fp32"]["passed"] and card["parity"]["fp32"]["max_abs_diff"] <= 1e-4
    assert card["source"]["kind"] == "ensemble" and card["export"]["ensemble"]["method"] == spec["method"]
    # one graph: one input, one output, one call; against members' Keras outputs combined in numpy
    x = dataset.split("test").images[:10].astype(np.float32)
    comb = Combination.from_spec(spec, 2, dataset.num_classes)
    views = comb.tta or ["identity"]
    mp = [sum(keras_probs(m, tta_numpy(v, x)).astype(np.float64) for v in views) / len(views) for m in members]
    onnx_p = onnx_probs(out / "model.onnx", x)
    np.testing.assert_allclose(onnx_p, combine_numpy(mp, comb), atol=1e-4)
    try:
        from ensemble.folder import predict_proba
    except ImportError:
        return onnx_p
    np.testing.assert_allclose(onnx_p, predict_proba(folder, x), atol=1e-4)  # the ensemble package's own Keras path
    return onnx_p


def test_vote_ensemble_one_graph(runs, dataset, tmp_path):
    root, members = runs
    spec = {"method": "vote", "weights": [0.7, 0.3], "temperature": 1.5, "eps": 1e-7}
    folder = make_ensemble(root / "vote", members, spec)
    p = _ensemble_check(folder, tmp_path / "vote", runs, dataset, spec)
    import export

    model = export.load(tmp_path / "vote", "cpu")
    assert model.metadata["kind"] == "ensemble" and model.metadata["ensemble"]["weights"] == [0.7, 0.3]
    np.testing.assert_allclose(model.predict(dataset.split("test").images[:10]), p, atol=1e-6)
    from onnx.reference import ReferenceEvaluator  # second runtime on the merged graph

    ref = ReferenceEvaluator(str(tmp_path / "vote" / "model.onnx")).run(
        None, {"images": dataset.split("test").images[:2].astype(np.float32)}
    )[0]
    np.testing.assert_allclose(ref, p[:2], atol=1e-5)


def test_stack_ensemble_one_graph(runs, dataset, tmp_path):
    root, members = runs
    c = dataset.num_classes
    rng = np.random.default_rng(3)
    spec = {
        "method": "stack",
        "coef": rng.normal(0, 0.5, (c, 2 * c)).tolist(),
        "intercept": rng.normal(0, 0.1, c).tolist(),
        "features": "log",
        "temperature": 0.8,
        "eps": 1e-7,
        "learner": "logistic",
    }
    folder = make_ensemble(root / "stack", members, spec)
    _ensemble_check(folder, tmp_path / "stack", runs, dataset, spec)


def test_vote_ensemble_with_tta(runs, dataset, tmp_path):
    root, members = runs
    spec = {
        "method": "vote",
        "weights": [0.5, 0.5],
        "temperature": 1.0,
        "eps": 1e-7,
        "tta": ["identity", "flip", "rot90", "flip_rot270"],
    }
    folder = make_ensemble(root / "vote_tta", members, spec)
    _ensemble_check(folder, tmp_path / "vote_tta", runs, dataset, spec)


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


def test_mismatched_ensemble_member_is_refused(runs, tmp_path):
    from export.sources import open_source

    root, members = runs
    folder = make_ensemble(tmp_path / "ens", members, {"method": "vote", "weights": [0.5, 0.5], "temperature": 1.0})
    spec = json.loads((folder / "ensemble.json").read_text())
    spec["members"][0]["card_sha256"] = "0" * 64
    (folder / "ensemble.json").write_text(json.dumps(spec))
    with pytest.raises(ZooError, match="modified after the card"):
        open_source(folder)  # the ensemble card's file hash no longer matches
    write_card(folder, read_card(folder, verify=False))  # re-sealed, but the member hash is still wrong
    with pytest.raises(ZooError, match="changed since the ensemble was built"):
        open_source(folder)


def test_cli_export(runs, tmp_path, capsys):
    from zoo.cli import main

    _, (m1, _) = runs
    out = tmp_path / "cli"
    assert main(["-q", "export", str(m1), "--out", str(out), "--limit", "8"]) == 0
    text = capsys.readouterr().out
    assert "fp32" in text and "top-1 agreement" in text
    assert read_card(out)["parity"]["fp32"]["images"] == 8
    assert main(["-q", "export", str(m1), "--out", str(out)]) == 2  # exists, no --force


def test_export_ensemble_built_by_ensemble_package(runs, dataset, tmp_path):
    """Round trip with the real writer: ``ensemble.build`` folder -> one ONNX graph, parity vs its own predict_proba."""
    build = pytest.importorskip("ensemble.build")
    from ensemble.folder import predict_proba
    from export.convert import export_model

    _, members = runs
    folder = build.build_ensemble(
        members, tmp_path / "ens", data=dataset, config=build.EnsembleConfig(method="stack", calibrate=True, folds=2)
    )
    out = export_model(folder, tmp_path / "exp")
    assert read_card(out)["parity"]["fp32"]["passed"]
    x = dataset.split("test").images[:8]
    np.testing.assert_allclose(onnx_probs(out / "model.onnx", x), predict_proba(folder, x), atol=1e-4)


def test_pipeline_stage(runs, dataset, tmp_path):
    """``export_stages`` with a stand-in pipeline context: one stage per member, complete export folders."""
    from dataclasses import dataclass
    from types import SimpleNamespace

    from export.stage import export_stages
    from zoo.layout import RunLayout

    @dataclass
    class Stage:
        name: str
        outputs: list
        run: object

    _, members = runs
    cfg = SimpleNamespace(
        export=SimpleNamespace(
            enabled=True,
            opset=17,
            quantize=["int8"],
            include=["members", "ensembles"],
            calibration_size=32,
            parity_images=8,
        ),
        members=[SimpleNamespace(run_name=m.name) for m in members],
        ensemble=SimpleNamespace(enabled=False, methods=[]),
        distill=SimpleNamespace(enabled=False),
    )

    class Ctx(RunLayout):  # the pipeline context's layout, with the members where the fixture trained them
        def member_dir(self, name):
            return members[0].parent / name

    ctx = Ctx(tmp_path)
    ctx.cfg, ctx.dataset = cfg, dataset
    stages = export_stages(ctx, Stage)
    assert [s.outputs[0] for s in stages] == [tmp_path / "exports" / "member-m1", tmp_path / "exports" / "member-m2"]
    stages[0].run()
    card = read_card(stages[0].outputs[0])
    assert set(card["parity"]) == {"fp32", "int8"} and card["parity"]["fp32"]["images"] == 8
    cfg.export.enabled = False
    assert export_stages(ctx, Stage) == []
    cfg.export.enabled, cfg.export.quantize = True, ["int4"]
    with pytest.raises(ZooError, match="int4"):
        export_stages(ctx, Stage)


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
