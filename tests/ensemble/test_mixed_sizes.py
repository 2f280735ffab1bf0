"""Members at different input sizes in one ensemble and one ONNX graph; zero-weight members left out;
bootstrap intervals and the exact McNemar test against hand-computed values."""

from __future__ import annotations

import json

import numpy as np
import pytest

from zoo.artifacts import read_card, write_card
from zoo.errors import ZooError

TINY = {"widths": [8, 16], "depths": [1, 1], "stem_width": 8}
PIXELS = {
    "channels": 3,
    "dtype": "float32",
    "range": [0, 255],
    "color": "RGB",
    "resize": "bilinear",
    "preprocessing": "inside model",
}


# ----------------------------------------------------------------------------- evidence
def test_mcnemar_exact_matches_hand_computed_values():
    from ensemble.evidence import mcnemar_exact

    ref = np.array([1, 1, 1, 1, 1, 1, 0, 0, 0, 0], bool)
    other = np.array([1, 1, 1, 0, 0, 0, 1, 0, 0, 0], bool)  # b = 3 (only ref right), c = 1
    r = mcnemar_exact(ref, other)
    assert (r["b_reference_only"], r["c_other_only"]) == (3, 1)
    assert r["p_value"] == pytest.approx(2 * (1 + 4) / 16)  # 2·P(X ≤ 1), X ~ Bin(4, 1/2) = 0.625
    r = mcnemar_exact(np.zeros(5, bool), np.ones(5, bool))  # c = 5, b = 0: 2 / 2^5
    assert r["p_value"] == pytest.approx(0.0625)
    assert mcnemar_exact(ref, ref)["p_value"] == 1.0
    with pytest.raises(ZooError):
        mcnemar_exact(ref, ref[:5])


def test_bootstrap_interval_matches_hand_computed_percentiles():
    from ensemble.evidence import bootstrap_ci, bootstrap_indices, compare_rows

    correct = np.array([1, 0, 1, 1])
    idx = np.array([[0, 1, 2, 3], [1, 1, 1, 1], [0, 0, 0, 0]])  # resample means 0.75, 0, 1
    lo, hi = bootstrap_ci(correct, idx)
    assert lo == pytest.approx(0.0375) and hi == pytest.approx(0.9875)  # numpy linear percentiles of [0, .75, 1]
    a, b = bootstrap_indices(50, 100, seed=7), bootstrap_indices(50, 100, seed=7)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (100, 50) and a.min() >= 0 and a.max() < 50
    labels = np.array([0, 1, 1, 0, 1, 0, 0, 1])
    rows = compare_rows({"best": labels, "worse": np.array([0, 1, 1, 0, 0, 1, 0, 1])}, labels, resamples=200)
    assert rows["best"]["reference"] == "best" and rows["best"]["accuracy"] == 1.0
    assert rows["worse"]["accuracy"] == 0.75 and rows["worse"]["diff_vs_reference"] == -0.25
    assert rows["worse"]["mcnemar_b_reference_only"] == 2 and rows["worse"]["mcnemar_p_value"] == pytest.approx(0.5)
    assert rows["worse"]["ci_low"] <= 0.75 <= rows["worse"]["ci_high"]


# ----------------------------------------------------------------------------- mixed sizes
@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Two untrained tiny custom_cnn members on the same synthetic data, at 24 and 32 px."""
    import keras

    from zoo.data import load_dataset
    from zoo.registry import create_model

    root = tmp_path_factory.mktemp("mixed")
    runs, data = [], {}
    for i, size in enumerate((24, 32)):
        ds = load_dataset("synthetic:48", size, val_fraction=0.25, test_fraction=0.25)
        data[size] = ds
        keras.utils.set_random_seed(20 + i)
        folder = root / "members" / f"m{size}"
        folder.mkdir(parents=True)
        create_model("custom_cnn", ds.num_classes, size, **TINY).save(folder / "model.keras")
        write_card(
            folder,
            {
                "kind": "member",
                "name": f"m{size}",
                "member": "custom_cnn",
                "params": TINY,
                "classes": list(ds.class_names),
                "input": {"image_size": size, **PIXELS},
                "data": ds.summary(),
                "metrics": {},
            },
        )
        runs.append(folder)
    return root, runs, data


def _members_by_hand(runs, x32: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two members' probabilities on 32-px images, the 24-px one through the loader's filter (PIL's
    antialiased bilinear; tests/zoo/models/test_resize.py checks it against PIL), as its in-graph resize does."""
    import keras

    from zoo.models.resize import pil_bilinear_matrix

    small = keras.saving.load_model(runs[0] / "model.keras")
    big = keras.saving.load_model(runs[1] / "model.keras")
    a = pil_bilinear_matrix(32, 24)
    resized = np.einsum("oh,nhwc,pw->nopc", a, x32, a).astype(np.float32)
    return small.predict(resized, verbose=0), big.predict(x32, verbose=0)


def test_mixed_size_members_build_one_ensemble_and_export_with_fp32_parity(mixed):
    from ensemble import EnsembleConfig, build_ensemble, load
    from export import export_model

    root, runs, data = mixed
    out = build_ensemble(
        runs, root / "ens_vote", data=data[32], config=EnsembleConfig(method="vote", weights=[1, 1], folds=3)
    )
    spec = json.loads((out / "ensemble.json").read_text())
    assert spec["input"]["image_size"] == 32 and [m["image_size"] for m in spec["members"]] == [24, 32]
    ens = load(out)
    x = data[32].split("val").images.astype(np.float32)
    by_hand = sum(_members_by_hand(runs, x)) / 2
    np.testing.assert_allclose(ens.predict_proba(x), by_hand / by_hand.sum(1, keepdims=True), atol=1e-5)
    # The stored val probabilities were computed the same way (not from the 24-px member's own 24-px data).
    np.testing.assert_allclose(np.load(out / "probs" / "val.npy"), ens.predict_proba(x), atol=1e-5)
    exp = export_model(out, root / "ens_vote_onnx", data=data[32], limit=16)
    card = read_card(exp)
    assert card["parity"]["fp32"]["passed"] and card["parity"]["fp32"]["max_abs_diff"] <= 1e-4
    assert card["input"]["image_size"] == 32


def test_zero_weight_members_are_left_out_of_the_ensemble_and_its_graph(mixed):
    import onnx

    from ensemble import EnsembleConfig, build_ensemble, load
    from export import export_model

    root, runs, data = mixed
    out = build_ensemble(
        runs, root / "ens_zero", data=data[32], config=EnsembleConfig(method="vote", weights=[1, 0], folds=3)
    )
    spec = json.loads((out / "ensemble.json").read_text())
    assert [m["name"] for m in spec["members"]] == ["m24"] and spec["weights"] == [1.0]
    assert [d["name"] for d in spec["dropped_members"]] == ["m32"]
    assert read_card(out)["dropped_members"][0]["weight"] == 0.0
    assert len(load(out).members) == 1
    exp = export_model(out, root / "ens_zero_onnx", data=data[32], limit=16)
    graph = onnx.load(str(exp / "model.onnx")).graph
    names = [n.name for n in graph.node]
    assert any(n.startswith("m0_") for n in names) and not any(n.startswith("m1_") for n in names)
    assert read_card(exp)["parity"]["fp32"]["passed"]


def test_ensemble_json_without_member_hash_is_refused_by_both_readers(mixed):
    from ensemble import EnsembleConfig, build_ensemble, load
    from export.sources import open_source

    root, runs, data = mixed
    out = build_ensemble(
        runs, root / "ens_hash", data=data[32], config=EnsembleConfig(method="vote", weights=[1, 1], folds=3)
    )
    spec = json.loads((out / "ensemble.json").read_text())
    del spec["members"][1]["card_sha256"]
    card = read_card(out)
    (out / "ensemble.json").write_text(json.dumps(spec))
    write_card(out, {k: v for k, v in card.items() if k != "files"})  # re-sign: only the hash is missing
    for reader in (load, open_source):
        with pytest.raises(ZooError, match=r"members\[1\]\.card_sha256"):
            reader(out)


def test_own_size_scores_every_member_on_its_stored_probabilities(tmp_path):
    """--own-size: no image is resized or recomputed; without it the smaller member must be run on images."""
    from ensemble.members import MemberProbs, open_members
    from tests.helpers import INPUT, make_run, member_probs
    from zoo.errors import ZooError

    y = np.arange(40) % 4
    runs = [
        make_run(
            tmp_path / "members" / f"m{s}",
            {"val": (member_probs(y, 2.0, seed=s), y)},
            input_spec={**INPUT, "image_size": s},
        )
        for s in (24, 32)
    ]
    probs, labels = MemberProbs(open_members(runs), own_size=True).split("val")
    np.testing.assert_allclose(probs, np.stack([member_probs(y, 2.0, seed=s) for s in (24, 32)]), atol=1e-6)
    np.testing.assert_array_equal(labels, y)
    with pytest.raises(ZooError, match="no --data"):
        MemberProbs(open_members(runs)).split("val")


def test_robust_fit_on_shifted_copies_with_mixed_sizes(mixed):
    """fit_shift: every member scores the ensemble's corrupted images through its in-graph resize."""
    from ensemble import EnsembleConfig, build_ensemble

    root, runs, data = mixed
    cfg = EnsembleConfig(method="vote", folds=3, fit_shift=["colour"], fit_shift_severities=[2])
    out = build_ensemble(runs, root / "ens_robust", data=data[32], config=cfg)
    card = read_card(out)
    assert card["kind"] == "ensemble" and card["input"]["image_size"] == 32
    x = data[32].split("val").images
    spec = json.loads((out / "ensemble.json").read_text())
    assert spec["fit"]["shifted_copies"] == {"families": ["colour"], "severities": [2], "seed": 0, "rows": len(x)}
    assert card["fit_families"] == ["colour"] and "colour" in card["augment_families"]

    # The shifted fit rows, by hand: the 32-px image corrupted, then the 24-px member resizes it in its graph.
    from ensemble.members import MemberProbs, open_members
    from ensemble.robust import shifted_member_probs
    from zoo import shift

    (rows,) = shifted_member_probs(MemberProbs(open_members(runs), data=data[32]), "val", ["colour"], [2], seed=0)
    small, big = _members_by_hand(runs, shift.corrupt(x, "colour", 2, 0).astype(np.float32))
    np.testing.assert_allclose(rows[0], small, atol=1e-5)
    np.testing.assert_allclose(rows[1], big, atol=1e-5)
    assert not np.allclose(rows[1], _members_by_hand(runs, x.astype(np.float32))[1], atol=1e-3)  # really corrupted
