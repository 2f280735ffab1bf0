"""Build an ensemble folder from member run folders (``zoo ensemble vote|stack``).

Steps: verify the members; get their probabilities per split (stored ``probs/`` or computed,
with TTA if asked); fit the chosen combiner on the fit split (val); score every variant
(members, votes, stacking, ± temperature) honestly (:mod:`ensemble.compare`); write
``ensemble.json``, probabilities, plots and the comparison; write the card last. The folder
is assembled under a hidden sibling name and renamed into place, so ``out`` is either absent
or complete.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ensemble import compare
from ensemble import tta as tta_mod
from ensemble.calibration import plot_reliability
from ensemble.combine import combine, formula
from ensemble.cv import fold_of_row, make_folds
from ensemble.folder import FORMAT_VERSION, SPEC_FILE, member_entry
from ensemble.members import MemberProbs, open_members
from ensemble.metrics import scores
from ensemble.stacking import LEARNERS
from ensemble.voting import FLOOR_GRID_STEPS
from zoo import ownership
from zoo.artifacts import probs_files, write_card, write_json, write_npy, write_probs
from zoo.errors import ZooError
from zoo.shift.families import artifact_families, union
from zoo.stage_config import EnsembleConfig

log = logging.getLogger(__name__)


def check_config(cfg: EnsembleConfig) -> None:
    """Check ``cfg`` before any work (the checks that need this package's learners and TTA views)."""
    if cfg.method not in ("vote", "stack"):
        raise ZooError(f"unknown ensemble method '{cfg.method}' (vote or stack)")
    if cfg.learner not in LEARNERS:
        raise ZooError(f"unknown meta-learner '{cfg.learner}'; choose from {sorted(LEARNERS)}")
    if cfg.features not in ("log", "prob"):
        raise ZooError(f"stacking features must be 'log' or 'prob', got '{cfg.features}'")
    if cfg.weights is not None and cfg.method != "vote":
        raise ZooError("--weights only applies to voting")
    tta_mod.parse(cfg.tta)
    if cfg.fit_clean_floor is not None:
        if not cfg.fit_shift or cfg.weights is not None:
            raise ZooError("a clean floor applies to a fitted vote or stack with shifted fit rows (--fit-shift)")
        if not 0.0 < cfg.fit_clean_floor < 1.0:
            raise ZooError(f"the clean floor must be a fraction in (0, 1), got {cfg.fit_clean_floor}")
    if cfg.fit_shift:
        from zoo.shift import resolve_families

        cfg.fit_shift = resolve_families(list(cfg.fit_shift))


def build_ensemble(
    runs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    data: Any = None,
    config: EnsembleConfig | None = None,
    force: bool = False,
) -> Path:
    """Write a complete ensemble folder at ``out``; returns its path.

    ``out`` follows :mod:`zoo.ownership` (new, empty, or with ``force`` an earlier ensemble; never a
    member run) and is locked while the ensemble is built.
    """
    with ownership.claim(out, "ensemble", force=force, sources=runs) as claim:
        return _build(runs, claim, data, config)


def _build(runs: Sequence[str | os.PathLike], claim: ownership.Claim, data: Any, config: EnsembleConfig | None) -> Path:
    cfg = config or EnsembleConfig()
    check_config(cfg)
    tta = tta_mod.parse(cfg.tta)
    members = open_members(runs)
    out = claim.out
    if cfg.method == "stack" and len(members) < 2:
        raise ZooError("stacking needs at least 2 members")
    if cfg.method == "vote" and cfg.weights is not None and len(cfg.weights) != len(members):
        raise ZooError(f"{len(cfg.weights)} weights given for {len(members)} members")
    source = MemberProbs(members, data=data, tta=tta, batch_size=cfg.batch_size)
    fit_probs, fit_labels = source.split(cfg.fit_split)
    other = {s: source.split(s) for s in source.available_splits() if s != cfg.fit_split}
    folds = make_folds(fit_labels, cfg.folds, cfg.seed)
    n_fit, fit_all, copies = len(fit_labels), (fit_probs, fit_labels, folds), 1
    if cfg.fit_shift:  # clean rows + shifted copies (each copy in its image's fold); the families become in-family
        from ensemble import robust

        shifted = robust.shifted_member_probs(
            source, cfg.fit_split, cfg.fit_shift, cfg.fit_shift_severities, cfg.seed, cfg.batch_size
        )
        fit_all = robust.extend_fit_rows(fit_probs, fit_labels, folds, shifted)
        copies = 1 + len(shifted)

    names = [m.name for m in members]
    variants = compare.make_variants(
        names,
        cfg.weights,
        cfg.learner,
        cfg.learner_params,
        cfg.features,
        cfg.folds,
        cfg.seed,
        clean_floor=cfg.fit_clean_floor,
        copies=copies,
        select=cfg.select_regularisation,
        built=cfg.method,
    )
    classes = list(members[0].card["classes"])
    rows, outputs = compare.evaluate(variants, *fit_all, other, cfg.fit_split, copies, classes)
    chosen = _chosen_variant(cfg, variants, names)
    before = _chosen_variant(EnsembleConfig(**{**asdict(cfg), "calibrate": False}), variants, names)
    after = _chosen_variant(EnsembleConfig(**{**asdict(cfg), "calibrate": True}), variants, names)
    final = dict(outputs[chosen]["spec"])
    # Members a fitted vote gives (numerically) zero weight are reported and left out of the
    # artifact, so inference and the exported graph do not run them.
    keep, dropped = prune_zero_weights(final, members, cfg.min_weight)
    if dropped:
        log.info(
            "leaving out zero-weight member(s): %s", ", ".join(f"{d['name']} (w={d['weight']:.2g})" for d in dropped)
        )
        members = [members[i] for i in keep]
        fit_probs = fit_probs[keep]
        other = {s: (mp[keep], y) for s, (mp, y) in other.items()}

    with claim.staging() as tmp:
        spec = _spec_json(cfg, final, members, out, tta, fit_labels, source)
        spec["dropped_members"] = dropped
        write_json(tmp / SPEC_FILE, spec)
        write_json(
            tmp / "folds.json",
            {
                "split": cfg.fit_split,
                "k": cfg.folds,
                "seed": cfg.seed,
                "protocol": "row i is scored by a combiner fitted on rows with a different fold",
                "fold_of_row": fold_of_row(folds, len(fit_labels)).tolist(),
            },
        )
        metrics: dict[str, Any] = {}
        splits = {cfg.fit_split: (fit_probs, fit_labels), **other}
        for split, (mp, y) in splits.items():
            p = combine(final, mp).astype(np.float32)
            write_probs(tmp, split, p, y)
            write_npy(tmp / "member_probs" / f"{split}.npy", mp.astype(np.float32))
            if split == cfg.fit_split:
                oof = outputs[chosen]["oof"][:n_fit]  # clean rows (shifted fit rows follow them)
                oof_file = probs_files(split, "_oof")[0]
                write_npy(tmp / oof_file, oof.astype(np.float32))
                # The honest estimate is the headline; in-sample scores of probs/<fit split>.npy are kept apart.
                metrics[split] = {
                    **scores(oof, y),
                    "scored": f"out-of-fold ({cfg.folds}-fold cross-fitting, {oof_file})",
                }
                metrics[f"{split}_in_sample"] = {
                    **scores(p, y),
                    "scored": f"in-sample: the combiner was fitted on these rows ({probs_files(split)[0]})",
                }
                panels = [
                    ("uncalibrated (out-of-fold)", outputs[before]["oof"][:n_fit], y),
                    ("temperature-scaled (out-of-fold)", outputs[after]["oof"][:n_fit], y),
                ]
            else:
                metrics[split] = scores(p, y)
                panels = [("uncalibrated", outputs[before][split], y), ("temperature-scaled", outputs[after][split], y)]
            plot_reliability(tmp / "plots" / f"reliability_{split}.png", panels)
        compare.write(rows, tmp, "comparison", f"Members vs ensembles ({len(names)} members)")
        card = {
            "kind": "ensemble",
            "name": out.name,
            "method": cfg.method,
            "classes": classes,
            "input": _input(members, source.input_size),
            "members": [
                {
                    "name": m.name,
                    "member": m.card.get("member"),
                    "image_size": int(m.card["input"]["image_size"]),
                    "card_sha256": m.sha256,
                    "identity_sha256": m.identity,
                }
                for m in members
            ],
            "dropped_members": dropped,
            "parents": [m.sha256 for m in members],
            "data": dict(members[0].card.get("data") or {}),
            "ensemble": {
                k: spec[k]
                for k in ("weights", "temperature", "tta", "learner", "learner_params", "features", "shift_weight")
                if k in spec
            },
            "config": asdict(cfg),
            "probability_sources": dict(source.sources),
            "metrics": metrics,
            # union of the members' trained shift families (a combiner fitted on shifted data adds its families)
            "augment_families": union(*(artifact_families(m.path, m.card) for m in members), cfg.fit_shift),
            "fit_families": sorted(cfg.fit_shift),
        }
        write_card(tmp, card)
    log.info("ensemble written to %s", out)
    return out


def _input(members, size: int) -> dict[str, Any]:
    """The ensemble's input spec: its members' pixel format at the size the probabilities were computed at.

    That is the largest size of all candidate members (also when a zero-weight member that set
    it was left out), so the stored combination was fitted on exactly what inference computes.
    """
    return {**dict(members[0].card["input"]), "image_size": int(size)}


def prune_zero_weights(
    spec: dict[str, Any], members: Sequence[Any], min_weight: float
) -> tuple[list[int], list[dict[str, Any]]]:
    """Indices of members to keep and reports of those a vote weights below ``min_weight``.

    Edits ``spec`` in place: the kept weights are renormalised to sum to 1 (the arithmetic
    changes by at most the dropped weight). Stacking (dense coefficients) keeps everyone.
    """
    if spec.get("method") != "vote" or len(members) < 2:
        return list(range(len(members))), []
    w = np.asarray(spec["weights"], dtype=np.float64)
    keep = [i for i in range(len(w)) if w[i] >= min_weight]
    if not keep:
        keep = [int(np.argmax(w))]
    dropped = [
        {
            "name": members[i].name,
            "weight": float(w[i]),
            "card_sha256": members[i].sha256,
            "identity_sha256": members[i].identity,
        }
        for i in range(len(w))
        if i not in keep
    ]
    spec["weights"] = (w[keep] / w[keep].sum()).tolist()
    return keep, dropped


def _chosen_variant(cfg: EnsembleConfig, variants: Sequence[compare.Variant], names: Sequence[str]) -> str:
    want_group = cfg.method
    for v in variants:
        if v.group != want_group or v.calibrated != cfg.calibrate:
            continue
        if want_group == "stack" or (not v.name.startswith("vote equal")):
            return v.name
    if len(names) == 1:  # a single "member" calibrated by temperature
        return f"{names[0]}{' +T' if cfg.calibrate else ''}"
    raise AssertionError("no variant matches the configuration")


def _spec_json(cfg, final, members, out, tta, fit_labels, source) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "method": cfg.method,
        "classes": list(members[0].card["classes"]),
        "input": _input(members, source.input_size),
        "members": [member_entry(m, out) for m in members],
        "data": {k: (members[0].card.get("data") or {}).get(k) for k in ("source", "fingerprint")},
        "tta": tta,
        "formula": formula({**final, "method": cfg.method}),
        "eps": final["eps"],
        "temperature": final["temperature"],
    }
    if cfg.method == "vote":
        spec["weights"] = list(final["weights"])
    else:
        for k in ("learner", "learner_params", "features", "coef", "intercept", "shift_weight", "selection"):
            if k in final:
                spec[k] = final[k]
    spec["fit"] = {
        "split": cfg.fit_split,
        "rows": int(len(fit_labels)),
        "weights": (
            "given"
            if cfg.weights is not None
            else f"max shifted accuracy with clean accuracy >= {cfg.fit_clean_floor} "
            f"(simplex grid, steps 1/{FLOOR_GRID_STEPS})"
            if cfg.fit_clean_floor is not None
            else "fitted (SLSQP, min log-loss, w>=0, sum 1)"
        )
        if cfg.method == "vote"
        else None,
        "calibrate": cfg.calibrate,
        "temperature_fit": final.get("temperature_fit", "NLL on the fit rows" if cfg.calibrate else "not fitted (T=1)"),
        "folds": cfg.folds,
        "seed": cfg.seed,
        "member_probabilities": dict(source.sources),
    }
    if cfg.fit_shift:
        spec["fit"]["shifted_copies"] = {
            "families": list(cfg.fit_shift),
            "severities": list(cfg.fit_shift_severities),
            "seed": cfg.seed,
            "rows": int(len(fit_labels)) * len(cfg.fit_shift) * len(cfg.fit_shift_severities),
        }
    return spec
