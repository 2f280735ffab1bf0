"""Stacking's nested model selection: regularisation and the shifted rows' weight under a clean floor.

The selection is scored on inner out-of-fold predictions of the rows a learner is given, so an
outer out-of-fold score of the whole procedure never sees its own rows, and an image's shifted
copies always sit in that image's fold.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from ensemble.cv import check_disjoint, make_folds, replicate_folds
from ensemble.stacking import REGULARISATION_GRID, SHIFT_WEIGHT_GRID, candidates, fit_stack, stack_oof
from tests.helpers import member_probs


def _robust_problem(n=240, copies=3, seed=0):
    """Clean rows: member 0 sharp, member 1 fair. Shifted copies: member 0 confidently wrong, member 1 unchanged."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    clean = np.stack([member_probs(y, 3.0, seed=1), member_probs(y, 1.2, seed=2)])
    shifted = [
        np.stack([member_probs((y + 1) % 4, 3.0, seed=10 + j), member_probs(y, 1.2, seed=20 + j)])
        for j in range(copies - 1)
    ]
    return np.concatenate([clean, *shifted], axis=1).astype(np.float64), np.tile(y, copies), n


def _rule(table, floor):
    if floor is None:
        return max(range(len(table)), key=lambda i: (table[i]["fit_rows_accuracy"], -table[i]["clean_nll"]))
    ok = [i for i, r in enumerate(table) if r["clean_accuracy"] >= floor]
    if ok:
        return max(ok, key=lambda i: (table[i]["shifted_accuracy"], table[i]["clean_accuracy"]))
    return max(range(len(table)), key=lambda i: (table[i]["clean_accuracy"], table[i]["shifted_accuracy"]))


def test_candidates_cover_the_grids_only_where_a_choice_is_asked_for():
    name, grid = REGULARISATION_GRID["logistic"]
    assert candidates("logistic", {}, False, 1, None) == [{"shift_weight": 0.0}]
    assert [c[name] for c in candidates("logistic", {}, True, 1, None)] == list(grid)
    assert candidates("logistic", {"C": 0.5}, True, 1, None) == [{"shift_weight": 0.0}]  # the caller fixed C
    assert candidates("logistic", {}, False, 3, None) == [{"shift_weight": 1.0}]  # robust fit, rows alike
    for select in (True, False):  # under a clean floor the regularisation is always searched
        floored = candidates("logistic", {}, select, 3, 0.9)
        assert len(floored) == len(grid) * len(SHIFT_WEIGHT_GRID)
        assert {c["shift_weight"] for c in floored} == set(SHIFT_WEIGHT_GRID)
    assert len(candidates("logistic", {"C": 1.0}, False, 3, 0.9)) == len(SHIFT_WEIGHT_GRID)


def test_replicated_folds_keep_every_copy_of_an_image_in_its_fold():
    y = np.random.default_rng(1).integers(0, 4, 60)
    folds = replicate_folds(make_folds(y, 5, 0), 60, 3)
    check_disjoint(folds, 180)
    for tr, te in folds:
        assert set((tr % 60).tolist()).isdisjoint((te % 60).tolist())
        assert len(te) == 3 * len(set((te % 60).tolist()))


def test_floor_fit_weights_the_shifted_rows_and_is_more_robust_than_the_clean_fit():
    mp, y, n = _robust_problem()
    clean_only = fit_stack(mp[:, :n], y[:n], select=True)
    spec = fit_stack(mp, y, select=True, copies=3, clean_floor=0.6)
    sel = spec["selection"]
    chosen = _rule(sel["candidates"], 0.6)
    assert sel["chosen"] == {k: sel["candidates"][chosen][k] for k in sel["chosen"]}
    assert spec["shift_weight"] == sel["chosen"]["shift_weight"] > 0
    assert spec["learner_params"]["C"] == sel["chosen"]["C"]
    assert sel["candidates"][chosen]["clean_accuracy"] >= 0.6

    from ensemble.combine import combine

    def acc(s, rows):
        return float((combine(s, mp[:, rows]).argmax(1) == y[rows]).mean())

    shifted_rows = np.arange(n, 3 * n)
    assert acc(spec, shifted_rows) > acc(clean_only, shifted_rows) + 0.2
    assert acc(spec, np.arange(n)) >= 0.6


def test_an_unreachable_floor_falls_back_to_the_most_accurate_clean_fit():
    mp, y, n = _robust_problem()
    spec = fit_stack(mp, y, select=True, copies=3, clean_floor=0.9999)
    table = spec["selection"]["candidates"]
    assert all(r["clean_accuracy"] < 0.9999 for r in table)
    sel = spec["selection"]
    chosen = _rule(table, 0.9999)  # the best clean accuracy, ties to the more robust
    assert sel["chosen"] == {k: table[chosen][k] for k in sel["chosen"]}
    assert set(sel["chosen"]) >= {"C", "shift_weight"}
    assert spec["learner_params"]["C"] == sel["chosen"]["C"] and spec["shift_weight"] == sel["chosen"]["shift_weight"]


def test_selection_without_a_floor_picks_the_best_inner_accuracy_and_records_it():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 4, 200)
    mp = np.stack([member_probs(y, 1.5, seed=3), member_probs(y, 1.0, seed=4), member_probs(y, 0.3, seed=5)])
    spec = fit_stack(mp, y, select=True, calibrate=True, inner_folds=4)
    table = spec["selection"]["candidates"]
    assert len(table) == len(REGULARISATION_GRID["logistic"][1])
    assert spec["learner_params"]["C"] == table[_rule(table, None)]["C"]
    assert spec["temperature"] > 0 and "shift_weight" not in spec
    json.dumps(spec)  # the table goes into ensemble.json as is


def test_nested_selection_never_sees_the_outer_scoring_rows(monkeypatch):
    import ensemble.stacking as st

    y = np.random.default_rng(42).integers(0, 4, 200)
    mp = np.stack([member_probs(y, 2.0, seed=3), member_probs(y, 1.0, seed=4)]).astype(np.float64)
    row_id = {mp[0, i].tobytes(): i for i in range(len(y))}
    seen: list[set[int]] = []
    real = st.fit_meta

    def spy(p, yy, *a, **kw):
        seen.append({row_id[p[0, i].tobytes()] for i in range(p.shape[1])})
        return real(p, yy, *a, **kw)

    monkeypatch.setattr(st, "fit_meta", spy)
    folds = make_folds(y, 5, seed=0)
    oof = stack_oof(mp, y, folds, select=True, inner_folds=3)
    assert oof.shape == (200, 4)
    per_fold = len(REGULARISATION_GRID["logistic"][1]) * 3 + 1  # every candidate on 3 inner folds, then the refit
    assert len(seen) == 5 * per_fold
    for f, (tr, te) in enumerate(folds):
        for rows in seen[f * per_fold : (f + 1) * per_fold]:
            assert rows <= set(tr.tolist()) and not rows & set(te.tolist())


def test_inner_fits_train_on_whole_images_clean_and_shifted_together(monkeypatch):
    import ensemble.stacking as st

    mp, y, n = _robust_problem(n=120)
    row_of = {mp[:, i].tobytes(): (i % n, i // n) for i in range(mp.shape[1])}  # (image, copy)
    calls: list[tuple[set[int], set[int]]] = []
    real = st.fit_meta

    def spy(p, yy, *a, **kw):
        rows = [row_of[p[:, i].tobytes()] for i in range(p.shape[1])]
        calls.append(({img for img, b in rows if b == 0}, {img for img, b in rows if b > 0}))
        return real(p, yy, *a, **kw)

    monkeypatch.setattr(st, "fit_meta", spy)
    fit_stack(mp, y, select=True, copies=3, clean_floor=0.6, inner_folds=3)
    with_shifted = [(c, s) for c, s in calls if s]
    assert with_shifted and len(with_shifted) < len(calls)  # weight-0 candidates fit the clean rows alone
    for clean_imgs, shifted_imgs in with_shifted:
        assert clean_imgs == shifted_imgs  # an image's copies are trained on with it, never scored against it
    assert any(len(c) < n for c, _ in with_shifted)  # inner fits, not only the refit on every image


def test_bad_row_blocks_are_refused():
    from zoo.errors import ZooError

    mp, y, n = _robust_problem(n=40)
    with pytest.raises(ZooError, match="equal blocks"):
        fit_stack(mp[:, :-1], y[:-1], copies=3, clean_floor=0.5)
