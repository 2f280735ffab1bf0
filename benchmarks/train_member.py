"""Benchmark: train one member on PBC (train split) at 64 px on the CPU; report val accuracy.

Targets: custom_cnn ≥ 96% val accuracy within 30 min of CPU training on 2 cores (issue #2);
the CPU-trainable ConvNeXt variant from scratch is reported the same way (issue #3).

    python benchmarks/train_member.py --data ../shared/data/pbc128 --out runs/bench/custom_cnn
    python benchmarks/train_member.py --member convnext_atto --epochs 12 --name train_convnext_atto --out runs/bench/atto
    python benchmarks/train_member.py --from-run runs/bench/atto --name train_convnext_atto   # summarise a finished run

Writes benchmarks/results/<name>.{json,md}. Data: the PBC dataset (Acevedo et al.,
Data in Brief 30 (2020) 105474, CC BY 4.0).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import conditions, describe, one_line

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--member", default="custom_cnn")
    ap.add_argument("--from-run", help="summarise this completed run folder instead of training")
    ap.add_argument("--data", default="../shared/data/pbc128")
    ap.add_argument("--out", default="runs/bench/custom_cnn_pbc64")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--patience", type=int, default=6)
    ap.add_argument("--augment", default="flip_rot90")
    ap.add_argument("--name", default="train_custom_cnn")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--note", default="", help="free text recorded with the results (e.g. what else ran)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    from zoo.artifacts import parameter_count, read_card
    from zoo.data import load_dataset
    from zoo.train import train

    machine = describe()
    before = conditions()
    t0 = time.time()
    if args.from_run:
        card = read_card(args.from_run)
        data = load_dataset(card["data"]["source"], card["input"]["image_size"])
        load_s, wall = time.time() - t0, None
    else:
        data = load_dataset(args.data, args.image_size)
        load_s = time.time() - t0
        t1 = time.time()
        run = train(
            args.member,
            data,
            args.out,
            image_size=args.image_size,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.lr,
            patience=args.patience,
            augment=args.augment,
            resume=args.resume,
        )
        wall = round(time.time() - t1, 1)
        card = read_card(run)
    hist = card["training"]
    n_train = len(data.split("train"))
    per_epoch = hist["seconds"] / max(1, hist["epochs_run"])
    result = {
        "benchmark": args.name,
        "member": card["member"],
        "run": str(args.from_run or args.out),
        "data": card["data"]["source"],
        "image_size": card["input"]["image_size"],
        "train_images": n_train,
        "val_images": len(data.split("val")),
        "epochs_run": hist["epochs_run"],
        "best_epoch": hist["best_epoch"],
        "training_seconds": hist["seconds"],
        "wall_seconds_incl_eval": wall,
        "data_load_seconds": round(load_s, 1),
        "seconds_per_epoch": round(per_epoch, 1),
        "train_images_per_second": round(n_train / per_epoch, 1),
        "val": card["metrics"].get("val"),
        "parameters": parameter_count(card),
        "config": {
            k: hist["config"][k]
            for k in (
                "epochs",
                "batch_size",
                "optimizer",
                "learning_rate",
                "weight_decay",
                "schedule",
                "label_smoothing",
                "patience",
                "augment",
            )
        },
        "history_conditions": "recorded at summary time" if args.from_run else "recorded around training",
        "machine": machine,
        "note": args.note,
        "conditions": {"start": before, "end": conditions()},
        "target": "val accuracy >= 0.96 within 30 min CPU training" if card["member"] == "custom_cnn" else None,
        "met": bool(card["metrics"]["val"]["accuracy"] >= 0.96 and hist["seconds"] <= 1800)
        if card["member"] == "custom_cnn"
        else None,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    v = result["val"]
    md = [
        f"# {args.name}: {result['member']} on PBC at {result['image_size']}px (CPU)",
        "",
        f"Machine: {one_line(machine)}",
        "",
        (
            f"Summarised from the finished run {args.from_run}; this script did not watch the machine during its training. {args.note}"
            if args.from_run
            else f"Load average at start {before['loadavg_1_5_15']}, at end {result['conditions']['end']['loadavg_1_5_15']} "
            f"({len(before['other_busy_processes'])} other busy processes at start): on a shared machine the time columns are upper bounds. {args.note}"
        ),
        "",
        "| member | params | epochs (best) | train time | s/epoch | train img/s | val acc | val bal. acc | val macro F1 | val ECE | target met |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {result['member']} | {result['parameters']:,} | {result['epochs_run']} ({result['best_epoch']}) | {hist['seconds'] / 60:.1f} min | {per_epoch:.1f} | {result['train_images_per_second']} | {v['accuracy']:.4f} | {v['balanced_accuracy']:.4f} | {v['macro_f1']:.4f} | {v['ece']:.4f} | { {True: 'yes', False: 'no', None: '-'}[result['met']] } |",
        "",
        f"Config: {json.dumps(result['config'])}. Data: PBC dataset (Acevedo et al. 2020, CC BY 4.0), train {n_train} / val {result['val_images']} images.",
        "",
    ]
    (RESULTS / f"{args.name}.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
