"""Members vs voting vs stacking on PBC val, before and after temperature scaling.

    python benchmarks/ensemble_pbc.py runs/pbc/members/* --data ../shared/data/pbc128 [--tta] [--note "…"]

For each member run and each ensemble variant — equal vote, fitted-weight vote (SLSQP on
log-loss), logistic stacking on log-probabilities — accuracy, macro F1, NLL and ECE on the
val split, without and with a temperature. PBC here has only train/val, so nothing fitted on
val may be scored in-sample: every fitted variant (weights, meta-learner, temperature, even
a single member's temperature) is scored by k-fold cross-fitting on val — each row is
predicted by a combiner fitted on the other folds (see ``ensemble/cv.py``). Members without
a temperature are scored as stored (``probs/val.npy``; recomputed from the model only when
absent or with ``--tta``).

Targets (issue #5): best ensemble ≥ best member + 1 accuracy point; ECE ≤ 1.5% after
calibration. Results: ``benchmarks/results/ensemble_pbc.{json,md}`` and one PNG, naming the
machine; a re-run replaces them.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"

TARGET_GAIN = 0.01
TARGET_ECE = 0.015


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="member run folders (≥ 2)")
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "pbc128"),
                    help="data the members were trained on (used only when probabilities must be computed)")
    ap.add_argument("--tta", nargs="?", const="dihedral", default=None, help="recompute member probabilities with TTA")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--learner", default="logistic", choices=("logistic", "ridge"))
    ap.add_argument("--out", default=str(RESULTS), help="results folder (default benchmarks/results)")
    ap.add_argument("--name", default="ensemble_pbc", help="results file stem")
    ap.add_argument("--note", default="", help="free text recorded with the results (e.g. which members)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")

    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "benchmarks"))
    from machine import describe, one_line

    from ensemble import compare, tta as tta_mod
    from ensemble.cv import make_folds
    from ensemble.members import MemberProbs, open_members

    if len(args.runs) < 2:
        ap.error("give at least 2 member runs")
    t0 = time.time()
    members = open_members(args.runs)
    source = MemberProbs(members, data=args.data, tta=tta_mod.parse(args.tta))
    probs, labels = source.split("val")
    t_probs = time.time() - t0
    folds = make_folds(labels, args.folds, args.seed)
    names = [m.name for m in members]
    variants = compare.make_variants(names, None, args.learner, None, "log", args.folds, args.seed)
    t1 = time.time()
    rows, outputs = compare.evaluate(variants, probs, labels, folds, None, "val")
    t_fit = time.time() - t1

    member_rows = [r for r in rows if r["group"] == "member"]
    ens_rows = [r for r in rows if r["group"] != "member"]
    best_member = max((r for r in member_rows if not r["calibrated"]), key=lambda r: r["accuracy"])
    best_ens = max(ens_rows, key=lambda r: (r["accuracy"], -r["ece"]))
    best_cal = min((r for r in ens_rows if r["calibrated"]), key=lambda r: r["ece"])
    best_ens_cal = next(r for r in ens_rows if r["model"] == best_ens["model"].removesuffix(" +T") + " +T")
    machine = describe()
    summary = {
        "best_member": {"model": best_member["model"], "accuracy": best_member["accuracy"]},
        "best_ensemble": {"model": best_ens["model"], "accuracy": best_ens["accuracy"], "ece": best_ens["ece"]},
        "gain_points": round(100 * (best_ens["accuracy"] - best_member["accuracy"]), 3),
        "best_ensemble_calibrated_ece": best_ens_cal["ece"],
        "lowest_calibrated_ensemble_ece": {"model": best_cal["model"], "ece": best_cal["ece"]},
        "target_gain_met": best_ens["accuracy"] >= best_member["accuracy"] + TARGET_GAIN,
        "target_ece_met": best_ens_cal["ece"] <= TARGET_ECE,
        "fitted_vote_weights": dict(zip(names, [round(w, 4) for w in outputs["vote fitted"]["spec"]["weights"]])),
        "stack_temperature": outputs[f"stack {args.learner}/log +T"]["spec"]["temperature"],
        "vote_temperature": outputs["vote fitted +T"]["spec"]["temperature"],
    }
    result = {
        "benchmark": "ensemble_pbc",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "note": args.note,
        "data": args.data,
        "split": "val",
        "rows_scored": int(len(labels)),
        "protocol": f"{args.folds}-fold stratified cross-fitting on val (seed {args.seed}); fitted variants scored out-of-fold",
        "tta": tta_mod.parse(args.tta),
        "members": [{"name": m.name, "member": m.card.get("member"), "path": str(m.path), "card_sha256": m.sha256} for m in members],
        "probability_sources": dict(source.sources),
        "seconds": {"member_probabilities": round(t_probs, 2), "fit_and_score_all_variants": round(t_fit, 2)},
        "summary": summary,
        "rows": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    md = [
        "# Ensembles on PBC val",
        "",
        f"- machine: {one_line(machine)}",
        f"- date: {result['date']}; {len(labels)} val images; members: {', '.join(names)}" + (f"; TTA {result['tta']}" if result["tta"] else ""),
        f"- protocol: {result['protocol']}. PBC here has no test split, so val is both fit and score split.",
        f"- best member {best_member['model']}: {100 * best_member['accuracy']:.2f}%; best ensemble {best_ens['model']}: "
        f"{100 * best_ens['accuracy']:.2f}% ({summary['gain_points']:+.2f} points; target ≥ +1: {'met' if summary['target_gain_met'] else 'NOT met'})",
        f"- ECE of {best_ens_cal['model']}: {100 * best_ens_cal['ece']:.2f}% (target ≤ 1.5%: {'met' if summary['target_ece_met'] else 'NOT met'})",
        f"- fitted vote weights: {summary['fitted_vote_weights']}; temperatures: vote {summary['vote_temperature']:.3f}, "
        f"stack {summary['stack_temperature']:.3f}",
        f"- time: member probabilities {t_probs:.1f}s ({result['probability_sources']}), fitting+scoring all variants {t_fit:.1f}s",
        "",
    ]
    if args.note:
        md.insert(2, f"- note: {args.note}")
    body = compare.markdown(rows, "Members vs ensembles").split("\n", 2)[2]
    (out / f"{args.name}.md").write_text("\n".join(md) + "\n" + body)
    compare.plot(rows, "val", out / f"{args.name}.png")
    print((out / f"{args.name}.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
