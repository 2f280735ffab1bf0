"""What sharing the shift suite's repeated work saves: the same artifacts scored in one process, first with
every model doing all of its own work, then with :mod:`zoo.content_cache` sharing it (ruler readings of the
same image sets, ensemble members' probabilities on them), as ``zoo run`` does.

    python benchmarks/shared_suite_work.py RUN/ensembles/vote RUN/ensembles/stack RUN/student \\
        --data ../shared/data/pbc128 --name shared_suite_work_pbc_cpu [--families colour,geometry]

Each artifact is scored plain and with magnification adapted per set (the run's two suites), in the order
given; in the first pass every suite starts with empty caches. Nothing is written into the artifact folders. Both passes must give the same accuracy in every cell
(checked); the figures are the seconds each artifact took in each pass. Writes
``benchmarks/results/<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from machine import conditions, describe, one_line  # benchmarks/machine.py

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def _cells(res: dict) -> dict[str, float]:
    out = {"clean": res["clean"]["accuracy"]}
    for fam, r in res["families"].items():
        out.update({f"{fam}/{s}": v["accuracy"] for s, v in r["severities"].items()})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", type=Path, help="artifact folders, scored in this order")
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--families", default=None, help="comma-separated (default: all six)")
    ap.add_argument("--max-images", type=int, default=600)
    ap.add_argument("--name", required=True, help="results file stem")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(REPO))

    import ensemble  # noqa: F401  (registers the ensemble predictor)
    from ensemble.folder import MEMBER_PROBS
    from zoo.artifacts import read_card
    from zoo.data import load_dataset
    from zoo.magnification import RULERS, MagnificationAdapter
    from zoo.predictors import load_predictor
    from zoo.shift import resolve_families
    from zoo.shift.suite import evaluate_suite

    fams = resolve_families(args.families.split(",") if args.families else None)
    before = conditions()
    cards = [read_card(f) for f in args.folders]
    data = {}
    for card in cards:
        size = int(card["input"]["image_size"])
        if size not in data:
            data[size] = load_dataset(args.data, size, seed=(card.get("data") or {}).get("seed", 0))
    caches = (RULERS, MEMBER_PROBS)
    passes, cells = {}, {}
    for mode in ("each model alone", "shared"):
        for c in caches:
            c.clear()
        rows = []
        for folder, card in zip(args.folders, cards):
            ds = data[int(card["input"]["image_size"])]
            part = ds.split(args.split)
            predict = load_predictor(folder, card)
            row = {"artifact": card["name"], "kind": card["kind"]}
            for label in ("plain", "adapted"):
                if mode == "each model alone":  # every suite does all of its own work, as before the cache
                    for c in caches:
                        c.clear()
                t = time.perf_counter()
                adapt = MagnificationAdapter.from_dataset(ds, predict) if label == "adapted" else None
                res = evaluate_suite(
                    predict, part.images, part.labels, ds.class_names, fams, max_images=args.max_images, adapt=adapt
                )
                row[f"{label}_s"] = round(time.perf_counter() - t, 1)
                got = _cells(res)
                key = (card["name"], label)
                if key in cells and cells[key] != got:
                    raise SystemExit(
                        f"{card['name']} ({label}): the shared pass scored differently: {cells[key]} vs {got}"
                    )
                cells[key] = got
            rows.append(row)
            print(mode, row, flush=True)
        passes[mode] = {
            "rows": rows,
            "cache_hits": {c_name: c.hits for c_name, c in zip(("rulers", "member_probs"), caches)},
        }
    total = {m: round(sum(r["plain_s"] + r["adapted_s"] for r in p["rows"]), 1) for m, p in passes.items()}
    doc = {
        "machine": describe(),
        "conditions": {"before": before, "after": conditions()},
        "command": "python benchmarks/shared_suite_work.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "families": list(fams),
        "max_images": args.max_images,
        "split": args.split,
        "passes": passes,
        "total_seconds": total,
        "same_accuracy_in_every_cell": True,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(doc, indent=2) + "\n")
    names = [r["artifact"] for r in passes["shared"]["rows"]]
    lines = [
        f"# Shift suite: work shared across models ({', '.join(names)})",
        "",
        f"Machine: {one_line(doc['machine'])}. Load average (1/5/15 min) before {before['loadavg_1_5_15']}, after "
        f"{doc['conditions']['after']['loadavg_1_5_15']}; other busy processes before: "
        f"{', '.join(p['cmd'] for p in before.get('other_busy_processes', [])) or 'none'}.",
        "",
        f"Families: {', '.join(fams)}; {args.max_images} {args.split} images per cell; each artifact plain and with "
        "magnification adapted per set, in this order, in one process. Same accuracy in every cell in both passes.",
        "",
        "| artifact | plain, alone (s) | plain, shared (s) | adapted, alone (s) | adapted, shared (s) |",
        "|---|---|---|---|---|",
    ]
    alone, shared = passes["each model alone"]["rows"], passes["shared"]["rows"]
    for a, s in zip(alone, shared):
        lines.append(
            f"| {a['artifact']} ({a['kind']}) | {a['plain_s']} | {s['plain_s']} | {a['adapted_s']} | {s['adapted_s']} |"
        )
    saved = 1 - total["shared"] / total["each model alone"]
    lines += [
        "",
        f"All suites: **{total['each model alone']} s** with each model alone, **{total['shared']} s** shared "
        f"({100 * saved:.0f}% less).",
        "",
        f"Cache hits in the shared pass: {passes['shared']['cache_hits']}.",
        "",
        f"`{doc['command']}`",
        "",
    ]
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
