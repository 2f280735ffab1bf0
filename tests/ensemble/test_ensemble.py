"""Ensembles: voting, stacking without leakage, calibration, TTA, the folder and its refusals.

Member run folders are built here directly (card + stored probabilities; a tiny Keras model
only where models are run), so nothing is trained.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pytest

from ensemble import EnsembleConfig, build_ensemble, load, predict_proba
from ensemble.calibration import fit_temperature
from ensemble.combine import combine, stack_features
from ensemble.cv import check_disjoint, folds_from_rows, make_folds
from ensemble.metrics import scores
from ensemble.stacking import fit_stack, stack_oof
from ensemble.voting import fit_vote, fit_weights
from tests.helpers import C4, INPUT, make_run, member_probs, softmax
from zoo.artifacts import card_sha256, read_card, write_card, write_npy
from zoo.errors import ZooError
from zoo.evaluate import expected_calibration_error


@pytest.fixture
def labels():
    rng = np.random.default_rng(42)
    return {"val": rng.integers(0, 4, 200), "test": rng.integers(0, 4, 120)}


@pytest.fixture
def two_runs(tmp_path, labels):
    good = make_run(
        tmp_path / "runs" / "good",
        {s: (member_probs(y, 2.5, seed=1 + i), y) for i, (s, y) in enumerate(labels.items())},
    )
    weak = make_run(
        tmp_path / "runs" / "weak",
        {s: (member_probs(y, 0.8, seed=7 + i), y) for i, (s, y) in enumerate(labels.items())},
    )
    return [good, weak]


# ----------------------------------------------------------------------------- voting
def test_vote_with_given_weights_is_the_weighted_average():
    rng = np.random.default_rng(0)
    p1, p2 = softmax(rng.normal(size=(10, 3))), softmax(rng.normal(size=(10, 3)))
    spec = fit_vote(np.stack([p1, p2]), np.zeros(10, int), weights=[1, 3])  # normalised to 0.25/0.75
    assert spec["weights"] == pytest.approx([0.25, 0.75])
    assert spec["temperature"] == 1.0
    np.testing.assert_allclose(combine(spec, np.stack([p1, p2])), 0.25 * p1 + 0.75 * p2, atol=1e-6)
    equal = fit_vote(np.stack([p1, p2]), np.zeros(10, int), weights=[1, 1])
    np.testing.assert_allclose(combine(equal, np.stack([p1, p2])), (p1 + p2) / 2, atol=1e-6)


def test_vote_refuses_bad_weights():
    mp = np.full((2, 4, 3), 1 / 3)
    with pytest.raises(ZooError):
        fit_vote(mp, np.zeros(4, int), weights=[1, -1])
    with pytest.raises(ZooError):
        fit_vote(mp, np.zeros(4, int), weights=[1, 1, 1])


def test_fitted_weights_prefer_the_better_member(labels):
    y = labels["val"]
    good, bad = member_probs(y, 3.0, seed=1), member_probs(y, 0.0, seed=2)
    w = fit_weights(np.stack([bad, good]), y)
    assert w.sum() == pytest.approx(1.0) and (w >= 0).all()
    assert w[1] > 0.8, w
    # The fitted vote has lower log-loss than the equal vote on the rows it was fitted on.
    mp = np.stack([bad, good])
    fitted, equal = fit_vote(mp, y), fit_vote(mp, y, weights=[1, 1])
    assert scores(combine(fitted, mp), y)["nll"] < scores(combine(equal, mp), y)["nll"]


# ----------------------------------------------------------------------------- stacking
def test_stacking_cross_validation_never_sees_its_scoring_rows(labels, monkeypatch):
    y = labels["val"]
    mp = np.stack([member_probs(y, 2.0, seed=3), member_probs(y, 1.0, seed=4)]).astype(np.float64)
    row_id = {mp[0, i].tobytes(): i for i in range(len(y))}  # identify rows by their (unique) probabilities
    folds = make_folds(y, 5, seed=0)
    check_disjoint(folds, len(y))
    assert sorted(np.concatenate([te for _, te in folds]).tolist()) == list(range(len(y)))

    import ensemble.stacking as st

    seen: list[set[int]] = []
    real_fit_meta = st.fit_meta

    def spy(p, yy, *a, **kw):
        seen.append({row_id[p[0, i].tobytes()] for i in range(p.shape[1])})
        return real_fit_meta(p, yy, *a, **kw)

    monkeypatch.setattr(st, "fit_meta", spy)
    oof = stack_oof(mp, y, folds, calibrate=True, inner_folds=3)
    assert oof.shape == (len(y), 4)
    # Per outer fold: 1 meta fit on its training rows + 3 inner fits (temperature) on subsets of them.
    assert len(seen) == 5 * (1 + 3)
    for f, (tr, te) in enumerate(folds):
        for rows in seen[f * 4 : (f + 1) * 4]:
            assert rows <= set(tr.tolist())
            assert not rows & set(te.tolist())


def test_stacking_learns_which_member_to_trust_per_class():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 4, 400)
    # Member A is right on classes 0/1 and guesses on 2/3; member B the other way round.
    a = np.where(np.isin(y, [0, 1])[:, None], member_probs(y, 4.0, seed=1), member_probs(y, 0.0, seed=2))
    b = np.where(np.isin(y, [2, 3])[:, None], member_probs(y, 4.0, seed=3), member_probs(y, 0.0, seed=4))
    mp = np.stack([a, b])
    folds = make_folds(y, 5, seed=0)
    oof = stack_oof(mp, y, folds)
    acc = scores(oof, y)["accuracy"]
    assert acc > max(scores(a, y)["accuracy"], scores(b, y)["accuracy"]) + 0.1


def test_stack_spec_is_the_documented_linear_formula(labels):
    y = labels["val"]
    mp = np.stack([member_probs(y, 2.0, seed=3), member_probs(y, 1.0, seed=4)]).astype(np.float64)
    spec = fit_stack(mp, y, features="log")
    coef, b = np.array(spec["coef"]), np.array(spec["intercept"])
    assert coef.shape == (4, 8) and b.shape == (4,)
    x = np.concatenate([np.log(mp[0] + spec["eps"]), np.log(mp[1] + spec["eps"])], axis=1)
    np.testing.assert_allclose(stack_features(mp, "log", spec["eps"]), x)
    np.testing.assert_allclose(combine(spec, mp), softmax(x @ coef.T + b), atol=1e-10)
    # Matches scikit-learn's own predict_proba for the multinomial logistic regression.
    from sklearn.linear_model import LogisticRegression

    ref = LogisticRegression(C=1.0, solver="newton-cholesky", max_iter=500).fit(x, y).predict_proba(x)
    np.testing.assert_allclose(combine(spec, mp), ref, atol=1e-6)


def test_ridge_meta_learner_stores_plain_arrays(labels):
    y = labels["val"]
    mp = np.stack([member_probs(y, 2.0, seed=3), member_probs(y, 1.0, seed=4)])
    spec = fit_stack(mp, y, learner="ridge", features="prob", calibrate=True, inner_folds=3)
    assert json.loads(json.dumps(spec))["learner"] == "ridge"
    assert spec["temperature"] > 0
    assert scores(combine(spec, mp), y)["accuracy"] > 0.6


# ----------------------------------------------------------------------------- calibration
def test_temperature_scaling_lowers_ece_on_overconfident_inputs():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 2000)
    z = rng.normal(0, 1, (2000, 4))
    z[np.arange(2000), y] += 1.0  # with unit noise, P(y | z) = softmax(z): z are calibrated logits
    over = 4.0 * z  # same ranking, far too confident
    t = fit_temperature(over, y)
    assert 3.2 < t < 5.0  # recovers roughly the inflation factor
    before, after = softmax(over), softmax(over / t)
    assert expected_calibration_error(y, after) < 0.5 * expected_calibration_error(y, before)
    assert (after.argmax(1) == before.argmax(1)).all()  # accuracy unchanged
    # The same through a calibrated single-member "vote" on probabilities.
    spec = fit_vote(before[None], y, weights=[1.0], calibrate=True)
    assert spec["temperature"] == pytest.approx(t, rel=0.05)
    assert expected_calibration_error(y, combine(spec, before[None])) < expected_calibration_error(y, before)


def test_ece_of_perfectly_calibrated_predictions_is_small():
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.3, 1.0, 20000)
    correct = rng.random(20000) < conf
    probs = np.stack([conf, 1 - conf], axis=1)
    y = np.where(correct, 0, 1)
    # Rows with conf < 0.5 predict class 1; calibrated either way by construction.
    assert expected_calibration_error(y, probs) < 0.02


# ----------------------------------------------------------------------------- folder
def test_folder_round_trip_vote(tmp_path, two_runs, labels):
    cfg = EnsembleConfig(method="vote", calibrate=True, folds=4, min_weight=0.0)  # keep zero-weight members
    out = build_ensemble(two_runs, tmp_path / "ens", config=cfg)
    card = read_card(out)
    assert card["kind"] == "ensemble" and card["classes"] == C4 and card["input"]["image_size"] == 32
    assert card["parents"] == [card_sha256(r) for r in two_runs]
    spec = json.loads((out / "ensemble.json").read_text())
    assert spec["method"] == "vote" and spec["format"] == 1 and spec["members"][0]["path"] == "../runs/good"
    assert spec["weights"][0] > spec["weights"][1]  # the good member weighs more
    assert sum(spec["weights"]) == pytest.approx(1.0) and spec["temperature"] > 0
    ens = load(out)
    mp = np.load(out / "member_probs" / "val.npy", allow_pickle=False)
    np.testing.assert_allclose(ens.combine(mp), np.load(out / "probs" / "val.npy"), atol=1e-6)
    # Recompute the documented formula by hand from ensemble.json alone.
    p = np.tensordot(np.array(spec["weights"]), mp.astype(np.float64), axes=1)
    by_hand = softmax(np.log(p + spec["eps"]) / spec["temperature"])
    np.testing.assert_allclose(by_hand, np.load(out / "probs" / "val.npy"), atol=1e-6)
    for f in (
        "comparison.md",
        "comparison.json",
        "comparison_val.png",
        "comparison_test.png",
        "plots/reliability_val.png",
        "plots/reliability_test.png",
        "probs/val_oof.npy",
        "probs/test.npy",
        "folds.json",
    ):
        assert (out / f).is_file(), f
    assert card["metrics"]["val"]["accuracy"] > 0.5 and "out-of-fold" in card["metrics"]["val"]["scored"]
    assert "val_in_sample" in card["metrics"]
    table = (out / "comparison.md").read_text()
    assert "vote fitted +T" in table and "stack logistic/log" in table and "good" in table
    folds = folds_from_rows(np.array(json.loads((out / "folds.json").read_text())["fold_of_row"]))
    check_disjoint(folds, len(labels["val"]))
    assert not list(out.rglob("*.pkl")) and not list(out.rglob("*.joblib"))


def test_folder_round_trip_stack_and_oof_is_scored(tmp_path, two_runs, labels):
    out = build_ensemble(two_runs, tmp_path / "stack", config=EnsembleConfig(method="stack", calibrate=True, folds=4))
    spec = json.loads((out / "ensemble.json").read_text())
    assert spec["method"] == "stack" and np.array(spec["coef"]).shape == (4, 8) and spec["features"] == "log"
    ens = load(out)
    mp = np.load(out / "member_probs" / "test.npy")
    np.testing.assert_allclose(ens.combine(mp), np.load(out / "probs" / "test.npy"), atol=1e-6)
    card = read_card(out)
    oof = np.load(out / "probs" / "val_oof.npy")
    assert card["metrics"]["val"]["accuracy"] == pytest.approx(scores(oof, labels["val"])["accuracy"])
    assert card["metrics"]["val"]["nll"] == pytest.approx(scores(oof, labels["val"])["nll"])
    # In-sample and out-of-fold predictions differ: the OOF ones come from learners that did not see the row.
    assert not np.allclose(oof, np.load(out / "probs" / "val.npy"))
    with pytest.raises(ZooError, match="complete artifact"):
        build_ensemble(two_runs, out, config=EnsembleConfig(method="stack"))


def test_tampered_member_file_is_refused(tmp_path, two_runs):
    out = build_ensemble(two_runs, tmp_path / "ens", config=EnsembleConfig(folds=4))
    load(out)
    probs = two_runs[0] / "probs" / "val.npy"
    p = np.load(probs)
    write_npy(probs, p[::-1].copy())
    with pytest.raises(ZooError, match="modified"):
        load(out)


@pytest.mark.parametrize("change", ["weights file", "configuration"])
def test_member_recarded_after_change_is_refused(tmp_path, two_runs, change):
    out = build_ensemble(two_runs, tmp_path / "ens", config=EnsembleConfig(folds=4))
    card = {k: v for k, v in read_card(two_runs[0]).items() if k != "files"}
    if change == "weights file":
        (two_runs[0] / "model.weights.h5").write_bytes(b"retrained")
    else:
        card["params"] = {"widths": [8, 16]}
    write_card(two_runs[0], card)  # files verify, identity differs
    with pytest.raises(ZooError, match="changed since the ensemble was built"):
        load(out)


def test_evaluating_a_member_after_its_ensemble_was_built_is_no_change(tmp_path, two_runs):
    """What `zoo evaluate` and the shift suite add to a member (eval/ files, metrics, rewritten
    probs) changes its card hash but not its identity, which is what the ensemble pins."""
    from zoo.artifacts import update_card, write_json

    out = build_ensemble(two_runs, tmp_path / "ens", config=EnsembleConfig(folds=4))
    before = card_sha256(two_runs[0])
    write_json(two_runs[0] / "eval" / "shift_suite.json", {"clean": {"accuracy": 0.9}})
    write_npy(two_runs[0] / "probs" / "test.npy", np.full((120, 4), 0.25, np.float32))
    update_card(two_runs[0], verify=False, metrics={"shift_suite": {"accuracy": 0.9}})  # as zoo evaluate does
    assert card_sha256(two_runs[0]) != before
    ens = load(out)
    assert ens.members[0].path == two_runs[0].resolve()  # the evaluated member, loaded
    # an ensemble.json written before identities were recorded still pins the whole card
    spec = json.loads((out / "ensemble.json").read_text())
    for m in spec["members"]:
        m.pop("identity_sha256")
    write_json(out / "ensemble.json", spec)
    write_card(out, {k: v for k, v in read_card(out, verify=False).items() if k != "files"})
    with pytest.raises(ZooError, match=r"changed since the ensemble was built \(card sha256"):
        load(out)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"classes": ["a", "b", "d", "c"]}, "has classes"),
        ({"input_spec": {**INPUT, "preprocessing": "imagenet mean/std outside"}}, "take different inputs"),
        ({"fingerprint": "other"}, "trained on different data"),
    ],
    ids=["classes", "preprocessing", "fingerprint"],
)
def test_inconsistent_members_are_refused(tmp_path, labels, change, message):
    """Each disagreement by its own check (members of different sizes are allowed: tests/ensemble/test_mixed_sizes)."""
    y = labels["val"]
    a = make_run(tmp_path / "a", {"val": (member_probs(y, 2.0), y)})
    b = make_run(tmp_path / "b", {"val": (member_probs(y, 1.0), y)}, **change)
    with pytest.raises(ZooError, match=message):
        build_ensemble([a, b], tmp_path / "ens")
    assert not (tmp_path / "ens").exists()


def test_members_over_different_rows_are_refused(tmp_path, labels):
    y = labels["val"]
    a = make_run(tmp_path / "a", {"val": (member_probs(y, 2.0), y)})
    b = make_run(tmp_path / "b", {"val": (member_probs(y[::-1], 1.0), y[::-1])})
    with pytest.raises(ZooError, match="different rows"):
        build_ensemble([a, b], tmp_path / "ens")


# ----------------------------------------------------------------------------- Keras members, TTA, CLI
@pytest.fixture(scope="module")
def keras_runs(tmp_path_factory):
    """Two tiny untrained custom_cnn members on synthetic data, without stored probabilities."""
    import keras

    from zoo.data import load_dataset
    from zoo.registry import create_model

    root = tmp_path_factory.mktemp("keras")
    ds = load_dataset("synthetic:64", 32, val_fraction=0.25, test_fraction=0.0)
    runs = []
    for i in range(2):
        keras.utils.set_random_seed(i)
        model = create_model("custom_cnn", 8, 32, widths=(8, 16), depths=(1, 1), stem_width=8)
        folder = root / f"m{i}"
        folder.mkdir()
        model.save(folder / "model.keras")
        write_card(
            folder,
            {
                "kind": "member",
                "name": f"m{i}",
                "member": "custom_cnn",
                "params": {},
                "classes": list(ds.class_names),
                "input": dict(INPUT),
                "data": ds.summary(),
                "metrics": {},
            },
        )
        runs.append(folder)
    return runs, ds


def test_predict_proba_runs_members_and_matches_stored_probs(tmp_path, keras_runs):
    runs, ds = keras_runs
    out = build_ensemble(
        runs, tmp_path / "ens", data=ds, config=EnsembleConfig(method="vote", weights=[0.3, 0.7], folds=3)
    )
    val = ds.split("val")
    p = predict_proba(out, val.images)
    assert p.shape == (len(val), 8) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(p, np.load(out / "probs" / "val.npy"), atol=1e-5)
    assert read_card(out)["probability_sources"]["val"] == "computed"
    with pytest.raises(ZooError, match="shape"):
        predict_proba(out, val.images[:, :16, :16])


def test_ensembles_sharing_members_run_each_member_once_per_image_set(tmp_path, keras_runs, monkeypatch):
    """The vote and the stack of one run are shown the same shift-suite sets: each member runs once per set."""
    from ensemble import folder as folder_mod
    from ensemble import tta

    runs, ds = keras_runs
    vote = load(build_ensemble(runs, tmp_path / "v", data=ds, config=EnsembleConfig(method="vote", folds=3)))
    stack = load(build_ensemble(runs, tmp_path / "s", data=ds, config=EnsembleConfig(method="stack", folds=3)))
    folder_mod.MEMBER_PROBS.clear()  # whatever earlier tests predicted
    calls = []
    real = tta.predict
    monkeypatch.setattr(tta, "predict", lambda *a, **k: calls.append(1) or real(*a, **k))
    x = ds.split("val").images[:12].copy()
    first = vote.member_probs(x)
    assert len(calls) == 2  # two members, one pass each
    again = stack.member_probs(x)
    assert len(calls) == 2 and np.array_equal(first, again)  # same members, same pixels: looked up
    first[:] = 0  # what a caller does with its copy does not reach the cache
    assert np.array_equal(stack.member_probs(x), again) and len(calls) == 2
    x[0, 0, 0, 0] ^= 1  # one changed value is another set
    stack.member_probs(x)
    assert len(calls) == 4 and folder_mod.MEMBER_PROBS.hits == 4  # two lookups of two members


def test_tta_dihedral_predictions_are_rotation_invariant(tmp_path, keras_runs):
    from ensemble import tta

    runs, ds = keras_runs
    out = build_ensemble(
        runs, tmp_path / "ens", data=ds, config=EnsembleConfig(method="stack", tta="dihedral", folds=3)
    )
    assert json.loads((out / "ensemble.json").read_text())["tta"] == list(tta.TRANSFORMS)
    ens = load(out)
    x = ds.split("val").images[:4]
    p = ens.predict_proba(x)
    for name in ("rot90", "flip_rot270"):
        np.testing.assert_allclose(ens.predict_proba(tta.apply(name, x)), p, atol=1e-4)
    np.testing.assert_allclose(p, np.load(out / "probs" / "val.npy")[:4], atol=1e-5)


def test_tta_transforms_are_the_eight_distinct_symmetries():
    from ensemble import tta

    x = np.arange(2 * 3 * 3 * 1).reshape(2, 3, 3, 1)
    outs = {tta.apply(n, x).tobytes() for n in tta.TRANSFORMS}
    assert len(outs) == 8
    np.testing.assert_array_equal(tta.apply("flip_rot90", x), np.rot90(x[:, :, ::-1], 1, axes=(1, 2)))
    assert tta.parse("flips") == ["identity", "flip"] and tta.parse(None) is None
    with pytest.raises(ZooError):
        tta.parse("rot45")


def test_cli_vote_and_stack(tmp_path, two_runs, capsys):
    from zoo.commands import ensemble as cmd

    parser = argparse.ArgumentParser(prog="zoo")
    cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "ensemble",
            "vote",
            *map(str, two_runs),
            "--out",
            str(tmp_path / "v"),
            "--weights",
            "1,2",
            "--calibrate",
            "--folds",
            "4",
        ]
    )
    assert args.func(args) == 0
    spec = json.loads((tmp_path / "v" / "ensemble.json").read_text())
    assert spec["weights"] == pytest.approx([1 / 3, 2 / 3])
    args = parser.parse_args(
        [
            "ensemble",
            "stack",
            *map(str, two_runs),
            "--out",
            str(tmp_path / "s"),
            "--learner",
            "ridge",
            "--features",
            "prob",
            "--folds",
            "4",
        ]
    )
    assert args.func(args) == 0
    assert json.loads((tmp_path / "s" / "ensemble.json").read_text())["learner"] == "ridge"
    printed = capsys.readouterr().out
    assert "stack ridge/prob" in printed


def test_pipeline_stage_builds_each_method_and_is_then_complete(tmp_path, labels):
    from ensemble.stages import stage_distill, stage_ensemble
    from zoo.config import MemberConfig, PipelineConfig
    from zoo.layout import RunLayout
    from zoo.pipeline import Stage

    cfg = PipelineConfig(output=str(tmp_path), members=[MemberConfig(name="good"), MemberConfig(name="weak")])
    for name, strength in (("good", 2.5), ("weak", 0.8)):
        make_run(
            tmp_path / "members" / name,
            {s: (member_probs(y, strength, seed=i), y) for i, (s, y) in enumerate(labels.items())},
        )

    class Ctx(RunLayout):
        def __init__(self):
            super().__init__(tmp_path)
            self.cfg = cfg

        @property
        def dataset(self):
            raise AssertionError("stored probabilities suffice; the dataset must not be loaded")

    ctx = Ctx()
    stages = stage_ensemble(ctx, Stage)
    assert [s.outputs for s in stages] == [[tmp_path / "ensembles" / "vote"], [tmp_path / "ensembles" / "stack"]]
    assert not any(s.complete() for s in stages)
    for s in stages:
        s.run()
    assert all(s.complete() for s in stages)
    assert (
        json.loads((tmp_path / "ensembles" / "stack" / "ensemble.json").read_text())["temperature"] != 1.0
    )  # calibrate=True
    assert stage_distill(ctx, Stage) == []  # distill.enabled is False by default
    cfg.distill.enabled, cfg.distill.teacher = True, "median"
    with pytest.raises(ZooError, match="teacher"):
        stage_distill(ctx, Stage)


def test_a_member_and_its_snapshot_make_one_ensemble(tmp_path, synthetic_small, snapshot_run):
    """A snapshot (zoo.train ``snapshots``) is a member folder inside its run: ensembles take it like any member."""
    from zoo.runs import load_probs

    run = snapshot_run
    snap = run / "snapshots" / "cycle1"
    out = build_ensemble([run, snap], tmp_path / "ens", config=EnsembleConfig(weights=[0.5, 0.5], folds=2))
    spec = json.loads((out / "ensemble.json").read_text())
    to_run = Path(os.path.relpath(run, out.resolve())).as_posix()
    assert to_run.startswith("../") and run.name == "run"
    assert [m["path"] for m in spec["members"]] == [to_run, f"{to_run}/snapshots/cycle1"]
    assert [m["name"] for m in spec["members"]] == ["run", "run_cycle1"]
    mp = np.stack([load_probs(run, "val")[0], load_probs(snap, "val")[0]])
    np.testing.assert_allclose(np.load(out / "member_probs" / "val.npy"), mp, atol=1e-6)
    images = synthetic_small.split("val").images
    np.testing.assert_allclose(predict_proba(out, images), load(out).combine(mp), atol=1e-5)
    assert read_card(out)["parents"] == [card_sha256(run), card_sha256(snap)]
