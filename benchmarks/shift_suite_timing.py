"""How long the shift suite takes on real data: PBC val at 64 px, the pipeline's default subsample.

Times (a) corrupting a stratified subsample of ``--max-images`` val images for every family at
every severity (``zoo.shift.corrupt``, 6 families × 5 severities), per family, and (b) one
complete :func:`zoo.shift.evaluate_suite` run with a ``custom_cnn`` (default width, untrained:
only its speed matters here) as the predictor, split into corruption and prediction time. The
machine and its load are recorded with the figures, since on a shared CPU they vary.

    nice -n 5 python benchmarks/shift_suite_timing.py --data /work/shared/data/pbc128
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
RESULTS = REPO / "benchmarks" / "results" / "shift_suite_timing"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="/work/shared/data/pbc128")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--max-images", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(REPO))

    from zoo import shift
    from zoo.data import load_dataset
    from zoo.shift.suite import evaluate_suite, stratified_subset

    before = conditions()
    ds = load_dataset(args.data, args.image_size, seed=args.seed)
    val = ds.split("val")
    idx = stratified_subset(val.labels, args.max_images, args.seed)
    x = val.images[idx]
    per_family = {}
    for fam in shift.FAMILIES:
        t = time.perf_counter()
        for s in shift.SEVERITIES:
            shift.corrupt(x, fam, s, args.seed)
        per_family[fam] = round(time.perf_counter() - t, 2)
    corrupt_total = sum(per_family.values())

    import keras

    import zoo.models  # noqa: F401
    from zoo.evaluate import predict_model
    from zoo.registry import create_model

    keras.utils.set_random_seed(0)
    model = create_model("custom_cnn", ds.num_classes, image_size=args.image_size)
    predict_model(model, x[:8])  # trace once
    t = time.perf_counter()
    res = evaluate_suite(
        lambda b: predict_model(model, b),
        val.images,
        val.labels,
        ds.class_names,
        seed=args.seed,
        max_images=args.max_images,
    )
    suite_total = time.perf_counter() - t
    after = conditions()
    images = len(x) * len(shift.FAMILIES) * len(shift.SEVERITIES)
    out = {
        "data": args.data,
        "split": "val",
        "image_size": args.image_size,
        "images": len(x),
        "cells": len(shift.FAMILIES) * len(shift.SEVERITIES),
        "corrupted_images": images,
        "corrupt_seconds_by_family": per_family,
        "corrupt_seconds": round(corrupt_total, 2),
        "corrupt_images_per_second": round(images / corrupt_total),
        "evaluate_suite_seconds": round(suite_total, 2),
        "evaluate_suite_split": res["seconds"],
        "predictor": "custom_cnn (default params, untrained), Keras model.predict, batch 256",
        "machine": describe(),
        "conditions_before": before,
        "conditions_after": after,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.with_suffix(".json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [
        "# Shift suite timing",
        "",
        (
            f"Machine: {one_line(out['machine'])}. Load average (1/5/15 min) before {before['loadavg_1_5_15']}, "
            f"after {after['loadavg_1_5_15']} (a shared machine: other jobs ran at the same time)."
        ),
        "",
        (
            f"{len(x)} PBC val images at {args.image_size} px (stratified subsample), 6 families × 5 severities "
            f"= {images} corrupted images."
        ),
        "",
        "| family | corrupt 5 severities (s) |",
        "|---|---|",
        *[f"| {f} | {s:.2f} |" for f, s in per_family.items()],
        f"| **all** | **{corrupt_total:.2f}** ({out['corrupt_images_per_second']} images/s) |",
        "",
        (
            f"One full `evaluate_suite` with {out['predictor']}: {suite_total:.1f} s "
            f"(corruption {res['seconds']['corrupt']} s, prediction {res['seconds']['predict']} s, "
            "clean pass included)."
        ),
        "",
        "Command: `nice -n 5 python benchmarks/shift_suite_timing.py` (defaults: --image-size 64 --max-images 600).",
    ]
    RESULTS.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
