"""``zoo train MEMBER``: train one member into a run folder."""

from __future__ import annotations

from zoo.commands.arguments import add_learning_rate, json_object


def register(sub) -> None:
    from zoo.stage_config import default
    from zoo.train_config import OPTIMIZERS, PRECISIONS, STRATEGIES, TrainConfig

    def d(name: str):
        return default(TrainConfig, name)

    p = sub.add_parser(
        "train",
        help="train one member (course-project recipe defaults) into a run folder",
        description="Train a registered member and write a run folder: model.keras, card.json, history.csv, "
        "probs/, eval/, plots/, logs/ (TensorBoard). Interrupted? Rerun with --resume.",
    )
    p.add_argument("member", help="registered member name (see `zoo list`)")
    p.add_argument(
        "--data", default="synthetic", help="synthetic[:N] | class-folder path | file.npz | bloodmnist[:SIZE]"
    )
    p.add_argument("--out", required=True, help="run folder to create")
    p.add_argument("--image-size", type=int, help="input size in pixels (default: the member's)")
    p.add_argument("--epochs", type=int, default=d("epochs"))
    p.add_argument("--batch-size", type=int, default=d("batch_size"))
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=d("optimizer"))
    add_learning_rate(p, d("learning_rate"), dest="lr")
    p.add_argument("--weight-decay", type=float, default=d("weight_decay"))
    p.add_argument("--schedule", choices=("cosine", "constant"), default=d("schedule"))
    p.add_argument("--label-smoothing", type=float, default=d("label_smoothing"))
    p.add_argument(
        "--patience", type=int, default=d("patience"), help="early-stopping patience in epochs (best epoch is restored)"
    )
    p.add_argument(
        "--snapshots",
        type=int,
        default=d("snapshots"),
        help="restart the cosine schedule so the epochs run as this many cycles; each earlier cycle's best weights "
        "become a member of their own in snapshots/cycle<k>/ (a snapshot ensemble)",
    )
    p.add_argument("--augment", default=d("augment"), help="augmentation policy (see `zoo data preview --help`)")
    p.add_argument("--balance", type=int, help="oversample every class to this many images per epoch")
    p.add_argument("--no-class-weights", action="store_true", help="do not weight the loss by inverse class frequency")
    p.add_argument("--params", help="member hyper-parameters as JSON, e.g. '{\"dropout\": 0.3}'")
    p.add_argument(
        "--weights", help="initial weights: imagenet | PATH (.weights.h5/.keras) | none (members that support it)"
    )
    p.add_argument(
        "--trainable-fraction", type=float, help="fine-tune only the last fraction of the backbone (transfer members)"
    )
    p.add_argument("--strategy", choices=STRATEGIES, default=d("strategy"), help="tf.distribute strategy")
    p.add_argument("--precision", choices=PRECISIONS, default=d("precision"))
    p.add_argument(
        "--accumulate",
        type=int,
        default=d("gradient_accumulation"),
        help="gradient accumulation steps (effective batch = batch × steps)",
    )
    p.add_argument("--seed", type=int, default=d("seed"))
    p.add_argument(
        "--nondeterministic",
        action="store_true",
        help="allow nondeterministic TensorFlow kernels and parallel augmentation (faster; default: bitwise reproducible)",
    )
    p.add_argument(
        "--skip-bad-files", action="store_true", help="skip unreadable images (listed in the card) instead of failing"
    )
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last completed epoch")
    p.set_defaults(func=run)


def run(args) -> int:
    from zoo.data import load_dataset
    from zoo.ownership import check_target
    from zoo.registry import get_spec
    from zoo.train import train

    spec = get_spec(args.member)
    params = json_object(args.params, "--params") or {}
    check_target(args.out, ("member", "student"), resumable=True, force_flag=None)  # before loading any data
    size = args.image_size or spec.default_image_size
    data = load_dataset(args.data, size, seed=args.seed, skip_bad=args.skip_bad_files)
    out = train(
        args.member,
        data,
        args.out,
        image_size=size,
        params=params,
        weights=args.weights,
        resume=args.resume,
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        learning_rate=args.lr,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        snapshots=args.snapshots,
        label_smoothing=args.label_smoothing,
        patience=args.patience,
        augment=args.augment,
        balance=args.balance,
        class_weights=not args.no_class_weights,
        seed=args.seed,
        strategy=args.strategy,
        precision=args.precision,
        gradient_accumulation=args.accumulate,
        trainable_fraction=args.trainable_fraction,
        deterministic=not args.nondeterministic,
    )
    from zoo.artifacts import read_card

    card = read_card(out)
    for split, m in card["metrics"].items():
        print(f"{split}: accuracy {m['accuracy']:.4f}  macro F1 {m['macro_f1']:.4f}  ECE {m['ece']:.4f}")
    for snapshot in card.get("snapshots", []):
        print(f"snapshot member: {out / snapshot}")
    print(f"run folder: {out}")
    return 0
