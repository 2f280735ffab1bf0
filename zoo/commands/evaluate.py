"""``zoo evaluate FOLDER``: score a run or ensemble folder on a split."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="metrics, confusion matrix and reliability diagram for a run or ensemble",
                       description="Accuracy, balanced accuracy, macro F1, per-class P/R/F1, one-vs-rest ROC AUC, NLL and ECE "
                                   "(scikit-learn), with PNG plots and metrics.json under FOLDER/eval/<split>/.")
    p.add_argument("folder", help="run (member/student) or ensemble folder")
    p.add_argument("--data", help="data source (default: the one in the card)")
    p.add_argument("--split", default="val", choices=("train", "val", "test"))
    p.add_argument("--shifted", type=float, metavar="SEVERITY",
                   help="score a stain/blur/noise-shifted copy of the split (severity 0..1) to estimate another lab")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--adapt-bn", action="store_true",
                   help="first re-estimate BatchNorm statistics on the scored images themselves (no labels; one lab's set "
                        "of a few hundred images or more; member/student runs)")
    p.set_defaults(func=run)


def run(args) -> int:
    from zoo.evaluate import evaluate

    m = evaluate(args.folder, args.data, args.split, shifted=args.shifted, seed=args.seed,
                 adapt_bn=args.adapt_bn)
    name = args.split + ("-shifted" if args.shifted else "") + ("-adaptbn" if args.adapt_bn else "")
    print(f"{name}: n={m['n']} accuracy {m['accuracy']:.4f}  balanced {m['balanced_accuracy']:.4f}  macro F1 {m['macro_f1']:.4f}  "
          f"AUC {m['roc_auc_ovr'] if m['roc_auc_ovr'] is None else round(m['roc_auc_ovr'], 4)}  NLL {m['nll']:.4f}  ECE {m['ece']:.4f}")
    print(f"results: {args.folder}/eval/{name}/metrics.json")
    return 0
