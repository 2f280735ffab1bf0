"""``zoo ensemble vote|stack RUN…`` and ``zoo distill ENSEMBLE``: thin wrappers over :mod:`ensemble`."""

from __future__ import annotations

import json

from zoo.commands.arguments import add_learning_rate, json_object
from zoo.errors import ZooError


def register(sub) -> None:
    from zoo.stage_config import DistillConfig, EnsembleConfig, default

    def e(name: str):
        return default(EnsembleConfig, name)

    def d(name: str):
        return default(DistillConfig, name)

    p = sub.add_parser(
        "ensemble",
        help="combine member runs: weighted soft voting or stacking (+ calibration, TTA)",
        description="Build an ensemble folder (ensemble.json, card.json, probs/, plots/, comparison.md/png) "
        "from member run folders. Combiners are fitted on the val split; every score on val is "
        "out-of-fold (k-fold cross-fitting), other splits are held out.",
    )
    kinds = p.add_subparsers(dest="method", metavar="METHOD", required=True)
    vote = kinds.add_parser(
        "vote", help="weighted average of member probabilities (weights given or fitted by log-loss)"
    )
    _common(vote, e)
    vote.add_argument(
        "--weights", help="comma-separated member weights (normalised to sum 1); default: fit them on val"
    )
    vote.set_defaults(func=run_ensemble)
    stack = kinds.add_parser("stack", help="linear meta-learner (scikit-learn) on member (log-)probabilities")
    _common(stack, e)
    stack.add_argument(
        "--learner", default=e("learner"), choices=("logistic", "ridge"), help=f"meta-learner (default {e('learner')})"
    )
    stack.add_argument(
        "--learner-params",
        default="{}",
        help="JSON keyword arguments, e.g. '{\"C\": 0.5}'",
    )
    stack.add_argument(
        "--select-regularisation",
        action="store_true",
        help="choose the learner's regularisation (logistic C in 0.01/0.1/1, ridge alpha in 0.1/1/10) by inner "
        "cross-validation, unless --learner-params gives it",
    )
    stack.add_argument(
        "--features", default=e("features"), choices=("log", "prob"), help="f(p): log(p+eps) (default) or p"
    )
    stack.set_defaults(func=run_ensemble)

    dp = sub.add_parser(
        "distill",
        help="train a compact student on an ensemble's soft targets",
        description="Knowledge distillation through the member training loop: the ensemble runs on every "
        "augmented batch the student sees; the student minimises "
        "alpha·T²·KL(teacher_T‖student_T) + (1−alpha)·CE(labels). Writes a run folder of kind 'student'.",
    )
    dp.add_argument("ensemble", help="ensemble folder (teacher)")
    dp.add_argument("--data", required=True, help="data source the ensemble's members were trained on")
    dp.add_argument("--out", required=True, help="student run folder to create")
    dp.add_argument("--student", default=d("student"), help=f"registry member to train (default {d('student')})")
    dp.add_argument("--params", default=None, help="JSON builder parameters; default: a compact custom_cnn")
    dp.add_argument("--image-size", type=int, help="student input size (default: the ensemble's)")
    dp.add_argument("--epochs", type=int, default=d("epochs"))
    dp.add_argument("--batch-size", type=int, default=d("batch_size"))
    add_learning_rate(dp, d("learning_rate"), dest="learning_rate")
    dp.add_argument(
        "--alpha", type=float, default=d("alpha"), help=f"weight of the soft-target term (default {d('alpha')})"
    )
    dp.add_argument(
        "--temperature",
        type=float,
        default=d("temperature"),
        help=f"softening temperature T (default {d('temperature')})",
    )
    dp.add_argument(
        "--augment", default=d("augment"), help=f"augmentation policy for the student (default {d('augment')})"
    )
    dp.add_argument("--patience", type=int, default=d("patience"))
    dp.add_argument("--seed", type=int, default=d("seed"))
    dp.add_argument("--resume", action="store_true", help="continue an interrupted distillation from its last epoch")
    dp.set_defaults(func=run_distill)


def _common(p, e) -> None:
    """Arguments of both methods; ``e(field)`` is the EnsembleConfig default."""
    p.add_argument("runs", nargs="+", metavar="RUN", help="member run folders")
    p.add_argument("--data", help="data source; needed only when a member has no stored probs/ or with --tta")
    p.add_argument("--out", required=True, help="ensemble folder to create")
    p.add_argument("--calibrate", action="store_true", help="temperature-scale the ensemble output on val")
    p.add_argument(
        "--tta",
        nargs="?",
        const="dihedral",
        default=None,
        help="test-time augmentation: dihedral (default when given), flips, rot90, or a comma list",
    )
    p.add_argument("--folds", type=int, default=e("folds"), help=f"k for cross-fitting on val (default {e('folds')})")
    p.add_argument("--seed", type=int, default=e("seed"))
    p.add_argument("--batch-size", type=int, default=e("batch_size"))
    p.add_argument(
        "--force", action="store_true", help="replace an existing complete ensemble folder (never anything else)"
    )
    p.add_argument(
        "--fit-shift",
        default="",
        metavar="FAMILIES",
        help="robust fit: also fit the combiner on shifted copies of val from these zoo.shift families "
        "(comma list or 'all'; severities 2 and 4); they count as in-family for the ensemble",
    )
    p.add_argument(
        "--clean-floor",
        type=float,
        metavar="FRACTION",
        help="with --fit-shift: the most accurate combiner on the shifted copies among those keeping this clean "
        "accuracy (e.g. 0.985): vote weights on a 1/8 grid; for a stack, the shifted rows' weight and C, judged on "
        "inner out-of-fold scores",
    )


def run_ensemble(args) -> int:
    from ensemble import EnsembleConfig, build_ensemble

    weights = None
    if getattr(args, "weights", None):
        try:
            weights = [float(w) for w in args.weights.split(",")]
        except ValueError:
            raise ZooError(f"--weights must be comma-separated numbers, got '{args.weights}'") from None
    cfg = EnsembleConfig(
        method=args.method,
        weights=weights,
        calibrate=args.calibrate,
        tta=args.tta,
        learner=getattr(args, "learner", "logistic"),
        learner_params=json_object(getattr(args, "learner_params", None), "--learner-params") or {},
        features=getattr(args, "features", "log"),
        folds=args.folds,
        seed=args.seed,
        batch_size=args.batch_size,
        fit_shift=[f for f in args.fit_shift.split(",") if f.strip()] if args.fit_shift else [],
        fit_clean_floor=getattr(args, "clean_floor", None),
        select_regularisation=getattr(args, "select_regularisation", False),
    )
    out = build_ensemble(args.runs, args.out, data=args.data, config=cfg, force=args.force)
    print((out / "comparison.md").read_text())
    spec = json.loads((out / "ensemble.json").read_text())
    what = (
        f"weights {[round(w, 4) for w in spec['weights']]}"
        if spec["method"] == "vote"
        else f"{spec['learner']} on {spec['features']}-probabilities"
    )
    print(f"ensemble: {out} ({spec['method']}, {what}, temperature {spec['temperature']:.4f})")
    return 0


def run_distill(args) -> int:
    from ensemble.distill import DistillConfig, distill

    cfg = DistillConfig(
        student=args.student,
        params=json_object(args.params, "--params"),
        image_size=args.image_size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        alpha=args.alpha,
        temperature=args.temperature,
        augment=args.augment,
        patience=args.patience,
        seed=args.seed,
    )
    out = distill(args.ensemble, args.data, args.out, cfg, resume=getattr(args, "resume", False))
    from zoo.artifacts import read_card

    m = read_card(out)["metrics"]
    print(
        "student: "
        + ", ".join(f"{s} accuracy {v['accuracy']:.4f} ECE {v['ece']:.4f}" for s, v in m.items() if "accuracy" in v)
    )
    print(f"run folder: {out}")
    return 0
