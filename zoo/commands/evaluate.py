"""``zoo evaluate FOLDER``: score a run, ensemble or export folder on a split, or on the shift suite."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="metrics, confusion matrix and reliability diagram; or the shift suite (--shift-suite)",
        description="Accuracy, balanced accuracy, macro F1, per-class P/R/F1, one-vs-rest ROC AUC, NLL and ECE "
        "(scikit-learn), with PNG plots and metrics.json under FOLDER/eval/<split>/. With --shift-suite: "
        "accuracy, balanced error and ECE per shift family and severity, in-family vs out-of-family "
        "(families the model's training augmentation did not cover) and mean corruption error, "
        "written to FOLDER/eval/shift_suite.{json,md,png}.",
    )
    p.add_argument("folder", help="run (member/student), ensemble or export folder")
    p.add_argument("--data", help="data source (default: the one in the card)")
    p.add_argument("--split", default="val", choices=("train", "val", "test"))
    p.add_argument(
        "--shifted",
        type=float,
        metavar="SEVERITY",
        help="score a stain/blur/noise-shifted copy of the split (severity 0..1) to estimate another lab",
    )
    p.add_argument(
        "--shift-suite",
        nargs="?",
        const="all",
        metavar="FAMILIES",
        help="score the shift suite: all families, or a comma-separated list of "
        "colour, illumination, optics, sensor, artefacts, geometry",
    )
    p.add_argument(
        "--reference",
        metavar="FOLDER|JSON",
        help="with --shift-suite: normalise corruption errors by this model's (an artifact folder, whose stored "
        "results are used if comparable, else it is scored in memory; or its eval/shift_suite.json); "
        "without it CE is unnormalised",
    )
    p.add_argument(
        "--max-images",
        type=int,
        default=600,
        help="with --shift-suite: stratified subsample of the split (0 = all; default 600)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--adapt-scale",
        action="store_true",
        help="first measure the magnification of the scored images as one set (one lab's acquisition) against "
        "the training images, no labels, and resample them back; with --shift-suite each acquisition is measured "
        "on its own and the results go to FOLDER/eval/shift_suite_adapt_scale.{json,md,png}",
    )
    p.add_argument(
        "--adapt-bn",
        action="store_true",
        help="first re-estimate BatchNorm statistics on the scored images themselves (no labels; one lab's set "
        "of a few hundred images or more; member/student runs)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    import ensemble  # noqa: F401  (registers the ensemble predictor)
    import export  # noqa: F401  (registers the ONNX predictor for export folders)
    from zoo.errors import ZooError

    if args.shift_suite is not None:
        if args.shifted:
            raise ZooError("--shifted and --shift-suite are separate evaluations; give one")
        if args.adapt_bn:
            raise ZooError(
                "--adapt-bn applies to one split (e.g. --shifted); per-cell BN adaptation on the suite is in "
                "benchmarks/robustness.py"
            )
        return _suite(args)
    if args.reference:
        raise ZooError("--reference applies to --shift-suite")
    from zoo.evaluate import evaluate

    m = evaluate(
        args.folder,
        args.data,
        args.split,
        shifted=args.shifted,
        seed=args.seed,
        adapt_bn=args.adapt_bn,
        adapt_scale=args.adapt_scale,
    )
    name = m["name"]
    if args.adapt_scale:
        z = m.get("magnification")
        print(f"magnification read on the split: {'n/a (not measurable)' if z is None else f'×{z:.3f}'}")
    print(
        f"{name}: n={m['n']} accuracy {m['accuracy']:.4f}  balanced {m['balanced_accuracy']:.4f}  "
        f"macro F1 {m['macro_f1']:.4f}  "
        f"AUC {m['roc_auc_ovr'] if m['roc_auc_ovr'] is None else round(m['roc_auc_ovr'], 4)}  "
        f"NLL {m['nll']:.4f}  ECE {m['ece']:.4f}"
    )
    print(f"results: {args.folder}/eval/{name}/metrics.json")
    return 0


def _suite(args) -> int:
    from zoo.errors import ZooError
    from zoo.shift.report import evaluate_artifact

    if args.max_images < 0:
        raise ZooError(f"--max-images must be >= 0, got {args.max_images}")
    r = evaluate_artifact(
        args.folder,
        args.data,
        args.split,
        families=args.shift_suite,
        seed=args.seed,
        max_images=args.max_images or None,
        reference=args.reference,
        adapt_scale=args.adapt_scale,
    )

    def pct(v):
        return "  n/a" if v is None else f"{100 * v:5.1f}"

    print(f"shift suite on {args.split} ({r['n']} images): clean accuracy {pct(r['clean']['accuracy'])}%")
    if args.adapt_scale:
        print(
            f"magnification adapted per acquisition (class rulers from the training images at {r['adapt']['size']} px)"
        )
    print(
        f"{'family':<13} {'trained':<8} "
        + " ".join(f"{'s' + str(s):>5}" for s in r["severities"])
        + f" {'mean':>5} {'bal.err':>7} {'ECE':>5} {'CE':>6}"
    )
    for fam, f in r["families"].items():
        accs = " ".join(pct(f["severities"][str(s)]["accuracy"]) for s in r["severities"])
        print(
            f"{fam:<13} {'in' if fam in r['in_family'] else 'OUT':<8} {accs} {pct(f['mean_accuracy'])} "
            f"{pct(f['mean_balanced_error']):>7} {pct(f['mean_ece'])} {r['ce'][fam]:6.3f}"
        )
    print(
        f"mean out-of-family accuracy {pct(r['mean_out_of_family_accuracy']).strip()}%  "
        f"({', '.join(r['out_of_family']) or 'none'}); in-family {pct(r['mean_in_family_accuracy']).strip()}"
        f"{'%' if r['mean_in_family_accuracy'] is not None else ''}"
    )
    print(
        f"mCE {r['mce']:.3f}"
        + (f", out-of-family mCE {r['mce_out_of_family']:.3f}" if r["mce_out_of_family"] is not None else "")
        + ("" if r["ce_normalised"] else "  (unnormalised: no --reference given)")
    )
    stem = "shift_suite_adapt_scale" if args.adapt_scale else "shift_suite"
    print(f"results: {args.folder}/eval/{stem}.json (+ .md, .png)")
    return 0
