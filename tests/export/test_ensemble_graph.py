"""Whole ensembles as one ONNX graph: the combination math, vote/stack/TTA graphs with parity, refusals.

Ensembles are folders in the ``ensemble`` package's file format built here from the two tiny
members of ``tests/export/conftest.py`` and numpy weights/coefficients (nothing trained).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from export.ensemble_graph import TTA_TRANSFORMS, Combination, combine_numpy, tta_nodes, tta_numpy
from tests.helpers import ensemble_folder as make_ensemble
from tests.helpers import keras_probs, onnx_probs
from zoo.artifacts import read_card, write_card
from zoo.errors import ZooError

# ----------------------------------------------------------------------------- combination math (no Keras)


def test_combination_matches_ensemble_package():
    from ensemble.combine import combine

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
        np.testing.assert_allclose(ours, combine(spec, mp), atol=1e-6)


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
    from ensemble.tta import apply

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
    from ensemble.folder import predict_proba

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


def test_export_ensemble_built_by_ensemble_package(runs, dataset, tmp_path):
    """Round trip with the real writer: ``ensemble.build`` folder -> one ONNX graph, parity vs its own predict_proba."""
    import ensemble.build as build
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
