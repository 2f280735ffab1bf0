"""Distillation on PBC: each student architecture distilled from an ensemble and trained alone, same schedule.

    python benchmarks/distill_pbc.py --teacher runs/ens/vote --members runs/m/* \
        --student custom_cnn='{"widths": [16, 32, 64, 128], "depths": [1, 1, 1, 1], "stem_width": 16}' \
        --student mobilenet_v3_tiny --epochs 24 --runs runs/students --data ../shared/data/pbc128

For every ``--student NAME[=PARAMS]``: ``<runs>/<label>_distilled`` through ``ensemble.distill.distill``
(the teacher runs on each augmented batch the student sees, training through ``zoo.train``) and
``<runs>/<label>_alone`` through ``zoo.train.train`` with the member recipe (label smoothing,
class weights), both at the teacher's input size, same epochs, batch size and learning rate.
Interrupted runs resume; complete ones are reused. Then ``ensemble_pbc.py`` scores members,
ensembles and all students on the same val images (bootstrap CIs, exact McNemar vs the best
member, parameters, FLOPs) into ``benchmarks/results/<name>.{json,md,png}``.

Targets (issue #15): student ≤ 0.5M parameters, within 0.5 points of its teacher and ≥ 1 point
above the same student trained alone.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--teacher", required=True, help="ensemble folder that teaches")
    ap.add_argument("--members", nargs="+", required=True, help="member run folders (rows of the comparison)")
    ap.add_argument(
        "--student", action="append", required=True, metavar="NAME[=JSON]", help="student architecture; repeatable"
    )
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "pbc128"))
    ap.add_argument("--runs", required=True, help="folder for the student runs")
    ap.add_argument("--epochs", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--alpha", type=float, default=0.7)
    ap.add_argument("--temperature", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--name", default="distill_pbc", help="results file stem")
    ap.add_argument("--note", default="")
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "benchmarks"))
    import ensemble_pbc

    from ensemble import load
    from ensemble.distill import DistillConfig, distill
    from zoo.data import load_dataset
    from zoo.train import train

    size = load(args.teacher).image_size
    data = load_dataset(args.data, size)
    rows = []
    for item in args.student:
        name, _, params = item.partition("=")
        params = json.loads(params) if params else {}
        label = name + ("_" + "x".join(str(w) for w in params["widths"]) if "widths" in params else "")
        for how in ("distilled", "alone"):
            out = Path(args.runs) / f"{label}_{how}"
            if not (out / "card.json").exists():
                resume = (out / "checkpoint" / "state.json").exists()
                if how == "distilled":
                    cfg = DistillConfig(
                        student=name,
                        params=params,
                        epochs=args.epochs,
                        batch_size=args.batch_size,
                        learning_rate=args.lr,
                        alpha=args.alpha,
                        temperature=args.temperature,
                        patience=args.epochs,
                        seed=args.seed,
                    )
                    distill(args.teacher, data, out, cfg, resume=resume)
                else:
                    train(
                        name,
                        data,
                        out,
                        image_size=size,
                        params=params,
                        resume=resume,
                        epochs=args.epochs,
                        batch_size=args.batch_size,
                        learning_rate=args.lr,
                        patience=args.epochs,
                        seed=args.seed,
                        tensorboard=False,
                    )
            rows += ["--student", f"{label} {how}={out}"]
    return ensemble_pbc.main([*args.members, "--data", args.data, "--name", args.name, "--note", args.note, *rows])


if __name__ == "__main__":
    sys.exit(main())
