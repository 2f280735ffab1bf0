"""``zoo export`` (run/ensemble folder -> verified ONNX export folder) and ``zoo predict`` (ONNX Runtime).

Both are thin wrappers over :mod:`export`. Nothing heavy is imported at registration time:
``zoo predict`` loads ONNX Runtime, PIL and numpy only, never TensorFlow.
"""

from __future__ import annotations


def register(sub) -> None:
    from zoo.stage_config import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET

    p = sub.add_parser(
        "export",
        help="export a run or ensemble to ONNX (verified parity; optional fp16 / int8)",
        description="Convert a member/student run or a whole ensemble (all members, the combination and the temperature "
        "in one graph) to ONNX with tf2onnx, check it against Keras with ONNX Runtime on validation images "
        "(fp32 must agree to --atol, else nothing is written), optionally add fp16 and static int8 (QDQ) "
        "variants with their accuracy change. OUT is a folder: model.onnx, model.fp16.onnx, model.int8.onnx, "
        "card.json (kind 'export', the parity report).",
    )
    p.add_argument("source", metavar="RUN|ENSEMBLE", help="run folder (member/student) or ensemble folder")
    p.add_argument("--out", required=True, metavar="FOLDER", help="export folder to create")
    p.add_argument(
        "--opset",
        type=int,
        default=DEFAULT_OPSET,
        help=f"ONNX opset ({MIN_OPSET}..{MAX_OPSET}, default {DEFAULT_OPSET})",
    )
    p.add_argument(
        "--dtype",
        choices=("fp32", "fp16"),
        default="fp32",
        help="fp16 also writes model.fp16.onnx (for GPUs); model.onnx is always fp32",
    )
    p.add_argument(
        "--quantize",
        choices=("none", "int8"),
        default="none",
        help="int8: also write model.int8.onnx (static QDQ, per-channel)",
    )
    p.add_argument(
        "--calibration-data",
        metavar="SOURCE",
        help="int8 calibration images: data source whose train split is used (default: --data / the card's data)",
    )
    p.add_argument("--calibration-size", type=int, default=256, metavar="N", help="calibration images (default 256)")
    p.add_argument("--calibration-method", choices=("minmax", "entropy", "percentile"), default="minmax")
    p.add_argument("--data", metavar="SOURCE", help="parity images: data source (default: the one in the card)")
    p.add_argument("--split", default="val", help="split to check parity on (default val)")
    p.add_argument(
        "--limit", type=int, default=1000, metavar="N", help="at most N parity images (default 1000; 0 = all)"
    )
    from export.parity import DEFAULT_ATOL

    p.add_argument(
        "--atol", type=float, default=DEFAULT_ATOL, help=f"fp32 max |Δprobability| allowed (default {DEFAULT_ATOL:g})"
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--force", action="store_true", help="replace an existing complete export folder")
    p.set_defaults(func=run_export)

    q = sub.add_parser(
        "predict",
        help="classify image files/folders with an exported ONNX model (no TensorFlow)",
        description="Read images of any size and format (EXIF orientation, grayscale, RGBA, 16-bit handled), resize them "
        "to the model's input size from its metadata, and write class, confidence and per-class probabilities. "
        "Unreadable files are listed with status 'error' and the reason; they do not stop the run.",
    )
    q.add_argument("model", metavar="MODEL", help="exported .onnx file or export folder")
    q.add_argument(
        "inputs", nargs="+", metavar="IMAGE|FOLDER", help="image files and/or folders (searched recursively)"
    )
    q.add_argument("--out", metavar="FILE", help="write predictions to FILE.csv or FILE.json (default: CSV on stdout)")
    q.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    q.add_argument("--batch-size", type=int, default=32)
    q.add_argument(
        "--provider",
        choices=("auto", "cpu", "cuda", "tensorrt"),
        default="auto",
        help="ONNX Runtime execution provider (auto: CUDA if available, else CPU)",
    )
    q.add_argument("--variant", choices=("fp32", "fp16", "int8"), help="which file of an export folder (default fp32)")
    q.add_argument(
        "--adapt-scale",
        action="store_true",
        help="the inputs are one lab's set: read their magnification against the training images' rulers in the "
        "model's metadata and undo it before predicting (no labels; a few dozen images or more)",
    )
    q.add_argument(
        "--allow-unverified",
        action="store_true",
        help="use a model whose metadata has no parity record (warns instead of refusing)",
    )
    q.set_defaults(func=run_predict)


def run_export(args) -> int:
    from export.convert import export_model

    out = export_model(
        args.source,
        args.out,
        opset=args.opset,
        dtype=args.dtype,
        quantize=None if args.quantize == "none" else args.quantize,
        calibration_data=args.calibration_data,
        calibration_size=args.calibration_size,
        calibration_method=args.calibration_method,
        data=args.data,
        split=args.split,
        limit=args.limit or None,
        atol=args.atol,
        batch_size=args.batch_size,
        force=args.force,
    )
    from export.convert import read_export

    card = read_export(out)
    for name, v in card["variants"].items():
        r = v["parity"]
        acc = (
            f"  accuracy {r['accuracy']:.4f} ({r['accuracy_change'] * 100:+.2f} pts vs Keras)"
            if r.get("accuracy") is not None
            else ""
        )
        print(
            f"{name:5s} {v['file']:17s} {v['bytes'] / 1e6:7.2f} MB  max|Δp| {r['max_abs_diff']:.2e}  top-1 agreement {r['top1_agreement']:.4f}{acc}"
        )
    print(f"export: {out}")
    return 0


def run_predict(args) -> int:
    import sys

    from export.predictor import format_predictions, predict_files, summarize, write_predictions

    if args.out:  # before any work: not a folder, not under a file, an existing file only with --force
        from zoo.ownership import check_file_target

        check_file_target(args.out, force=args.force)
    model, records = predict_files(
        args.model,
        args.inputs,
        batch_size=args.batch_size,
        provider=args.provider,
        variant=args.variant,
        allow_unverified=args.allow_unverified,
        adapt_scale=args.adapt_scale,
    )
    if args.out:
        path = write_predictions(records, model.classes, args.out, model)
        print(f"{summarize(records)}; predictions: {path}", file=sys.stderr)
    else:
        sys.stdout.write(format_predictions(records, model.classes, "csv"))
        print(summarize(records), file=sys.stderr)
    return 0
