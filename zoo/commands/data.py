"""``zoo data inspect|clean|preview|policies``: curation and augmentation previews.

Thin wrappers over :func:`zoo.curate.inspect`, :func:`zoo.curate.clean`,
:func:`zoo.augment.preview.preview` and :func:`zoo.augment.describe`.
"""

from __future__ import annotations


def _thresholds(p) -> None:
    p.add_argument(
        "--max-hamming",
        type=int,
        default=10,
        metavar="BITS",
        help="pHash distance for near-duplicate candidates (default 10 of 64)",
    )
    p.add_argument(
        "--near-score",
        type=float,
        default=0.85,
        metavar="X",
        help="shift-tolerant correlation that confirms a near duplicate (default 0.85)",
    )
    p.add_argument(
        "--outlier-threshold",
        type=float,
        default=10.0,
        metavar="X",
        help="outlier when an image is X times farther from its nearest neighbours (colour statistics) than a typical image (default 10)",
    )
    p.add_argument(
        "--image-size", type=int, default=64, help="size for sources that are not folders (npz, bloodmnist, synthetic)"
    )
    p.add_argument("--workers", type=int, default=2, help="decoding threads (default 2)")


def register(sub) -> None:
    data = sub.add_parser(
        "data",
        help="inspect/clean a dataset, preview augmentation policies",
        description="Curation (class counts, sizes, duplicates and cross-split leakage, non-cell outliers) "
        "and augmentation previews. Nothing here modifies the data folder.",
    )
    dsub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    p = dsub.add_parser(
        "inspect",
        help="report counts, sizes, duplicates, leakage and outliers",
        description="Writes report.json, report.md and flagged.png (thumbnails of findings) to --out.",
    )
    p.add_argument("--data", required=True, help="class-folder tree (or npz / bloodmnist / synthetic source)")
    p.add_argument("--out", help="folder for report.json, report.md, flagged.png (default: print the summary only)")
    _thresholds(p)
    p.set_defaults(func=run_inspect)

    p = dsub.add_parser(
        "clean",
        help="write a cleaned copy (hard links) or a drop list; never touches --data",
        description="Drops unreadable files, duplicate copies (keeping the test > val > train copy; groups "
        "with conflicting labels entirely) and outliers, writing OUT/data/... plus the report.",
    )
    p.add_argument("--data", required=True, help="class-folder tree")
    p.add_argument("--out", required=True, help="new folder (must not exist or be empty, and be outside --data)")
    p.add_argument(
        "--mode",
        default="link",
        choices=("link", "copy", "list"),
        help="hard-link (default), copy, or only list files to drop",
    )
    p.add_argument("--keep-outliers", action="store_true", help="report outliers but do not drop them")
    _thresholds(p)
    p.set_defaults(func=run_clean)

    p = dsub.add_parser(
        "preview",
        help="montage PNG of a policy on one image per class",
        description="Rows are classes: the original, then augmented samples (run `zoo data policies` for the spec syntax).",
    )
    p.add_argument("--data", required=True, help="data source")
    p.add_argument(
        "--augment", required=True, metavar="POLICY", help="e.g. 'shift', 'course', 'flip_rot90,stain:0.3,mixup:0.2'"
    )
    p.add_argument("--out", default="augment_preview.png", help="PNG path or folder (default ./augment_preview.png)")
    p.add_argument("--force", action="store_true", help="replace an existing PNG at --out")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--samples", type=int, default=6, help="augmented samples per class (default 6)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_preview)

    p = dsub.add_parser("policies", help="list augmentation ops, their parameters and presets")
    p.set_defaults(func=run_policies)


def _config(args, **extra):
    from zoo.curate import CurateConfig

    return CurateConfig(
        max_hamming=args.max_hamming,
        near_score=args.near_score,
        outlier_threshold=args.outlier_threshold,
        image_size=args.image_size,
        workers=args.workers,
        **extra,
    )


def _summary_line(summary: dict) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in summary.items())


def run_inspect(args) -> int:
    from zoo.curate import inspect

    report = inspect(args.data, out=args.out, config=_config(args))
    print(_summary_line(report["summary"]))
    if report["leakage"]:
        print("leakage across splits: " + ", ".join(f"{k} {v}" for k, v in report["leakage"].items()))
    if args.out:
        print(f"report: {args.out}/report.md")
    return 0


def run_clean(args) -> int:
    from zoo.curate import clean

    summary = clean(args.data, args.out, mode=args.mode, config=_config(args, drop_outliers=not args.keep_outliers))
    print(
        f"kept {summary['kept']} of {summary['images']} images, dropped {summary['dropped']} (list: {args.out}/drop.txt)"
    )
    if "data" in summary:
        print(f"cleaned copy: {summary['data']} ({summary['linked']} hard links, {summary['copied']} copies)")
    return 0


def run_preview(args) -> int:
    from zoo.augment.preview import preview

    path = preview(
        args.data,
        args.augment,
        args.out,
        image_size=args.image_size,
        n_aug=args.samples,
        seed=args.seed,
        force=args.force,
    )
    print(f"preview: {path}")
    return 0


def run_policies(args) -> int:
    from zoo.augment import describe

    print(describe())
    return 0
