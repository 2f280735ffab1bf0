"""How much clean accuracy must a stack give up for robustness? The floor rule's frontier, nested and honest.

    python benchmarks/stack_frontier.py RUN [RUN ...] --data ../shared/data/pbc128 --name stack_frontier_pbc_cpu

A stack fitted on clean val plus shifted copies of it with every row alike kept only 98.30% clean on
``pbc-cpu``'s members (``pbc_cpu_stack_robust.md``). ``zoo ensemble stack --fit-shift … --clean-floor F``
instead chooses the shifted rows' weight (and the regularisation C) on *inner* out-of-fold scores: the
most accurate on the shifted rows among the candidates whose clean accuracy reaches ``F``
(:func:`ensemble.stacking.select_candidate`). This benchmark scores that whole procedure by *outer*
out-of-fold predictions (5-fold by image, each shifted copy in its image's fold), for a range of floors,
with C searched (the default under a floor) and with C fixed at 1, beside the clean fit and the
all-rows-alike fit. Selecting on inner estimates that just pass a floor favours lucky candidates, so the
outer clean accuracy can land below the floor; this measures by how much.

The shifted families are the fit's, so the shifted accuracy here is in-family for these stacks.
Writes ``benchmarks/results/<name>.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))

from machine import describe, one_line
from vote_frontier import FAMILIES, SEVERITIES, member_probs

FLOORS = (0.985, 0.987, 0.988, 0.989, 0.99)


def nested_scores(clean: np.ndarray, shifted: np.ndarray, y: np.ndarray, folds: int, seed: int, **fit) -> dict:
    """Outer out-of-fold clean and mean shifted accuracy of ``fit_stack(**fit)``.

    Every setting is scored on the same rows (clean, then each shifted copy, in its image's fold); a clean fit
    (no ``copies``) trains each fold's learner on that fold's clean rows alone, the first block of its rows.
    """
    from ensemble.cv import cross_fit, make_folds, replicate_folds
    from ensemble.stacking import fit_stack

    n, k = len(y), shifted.shape[1]
    mp = np.concatenate([clean, *np.moveaxis(shifted, 1, 0)], axis=1).astype(np.float64)
    labels = np.tile(y, 1 + k)
    rows = replicate_folds(make_folds(y, folds, seed), n, 1 + k)
    blocks = 1 + k if fit.get("copies", 1) > 1 else 1

    def fit_fold(p: np.ndarray, yy: np.ndarray) -> dict:
        m = len(yy) // (1 + k) * blocks
        return fit_stack(p[:, :m], yy[:m], seed=seed, **fit)

    t = time.perf_counter()
    right = cross_fit(fit_fold, mp, labels, rows).argmax(1) == labels
    seconds = time.perf_counter() - t
    return {
        "clean": float(right[:n].mean()),
        "clean_errors": int((~right[:n]).sum()),
        "shifted": float(right[n:].mean()),
        "seconds": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="member run folders")
    ap.add_argument("--data", required=True)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", required=True)
    args = ap.parse_args(argv)

    names, size, clean, shifted, y = member_probs(args.runs, args.data, args.seed)
    k = shifted.shape[1]
    settings = [("clean fit (C 1)", {}), ("all rows alike (C 1)", {"copies": 1 + k})]
    for floor in FLOORS:
        settings.append((f"floor {floor:g}, C searched", {"copies": 1 + k, "clean_floor": floor}))
        settings.append(
            (f"floor {floor:g}, C 1", {"copies": 1 + k, "clean_floor": floor, "learner_params": {"C": 1.0}})
        )
    rows = []
    for label, fit in settings:
        r = {"setting": label, **{k_: v for k_, v in fit.items() if k_ != "copies"}}
        r.update(nested_scores(clean, shifted, y, args.folds, args.seed, **fit))
        rows.append(r)
        print(f"{label}: clean {r['clean']:.4f} shifted {r['shifted']:.4f} ({r['seconds']} s)", flush=True)

    result = {
        "machine": describe(),
        "members": names,
        "input_size": size,
        "images": int(len(y)),
        "families": FAMILIES,
        "severities": list(SEVERITIES),
        "protocol": f"outer {args.folds}-fold out-of-fold by image (seed {args.seed}); shifted copies in their "
        "image's fold; each fold's stack chooses its candidate on inner 5-fold out-of-fold scores of its own rows",
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        "# Stack fitted for robustness under a clean floor: nested out-of-fold frontier",
        "",
        f"- machine: {one_line(result['machine'])}",
        f"- members: {', '.join(names)} (ensemble input {size} px); {len(y)} val images",
        f"- shifted rows: {', '.join(FAMILIES)} at severities {', '.join(map(str, SEVERITIES))} "
        f"({k} copies of every image; in-family for every stack here)",
        f"- protocol: {result['protocol']}",
        "",
        "| setting | clean (out-of-fold) | clean errors | shifted, in-family (out-of-fold) | seconds |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['setting']} | {100 * r['clean']:.2f}% | {r['clean_errors']} | {100 * r['shifted']:.2f}% | "
            f"{r['seconds']} |"
        )
    lines += [
        "",
        "The floor is applied to inner out-of-fold estimates; the clean column is the outer estimate of the whole "
        "procedure, so a floor that candidates only just pass can land below itself there.",
    ]
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    plot(rows, RESULTS / f"{args.name}.png")
    print(f"wrote {RESULTS / args.name}.{{json,md,png}}")
    return 0


def plot(rows: list[dict], path: Path) -> None:
    from zoo.plots import plt, save_figure

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for marker, key in (("o", "C searched"), ("s", "C 1")):
        sub = [r for r in rows if r["setting"].endswith(key) and "floor" in r["setting"]]
        ax.plot([100 * r["shifted"] for r in sub], [100 * r["clean"] for r in sub], marker + "-", label=f"floor, {key}")
        for r in sub:
            ax.annotate(f"{r['clean_floor']:g}", (100 * r["shifted"], 100 * r["clean"]), fontsize=7)
    for r in rows:
        if "floor" not in r["setting"]:
            ax.plot(100 * r["shifted"], 100 * r["clean"], "k^")
            ax.annotate(r["setting"], (100 * r["shifted"], 100 * r["clean"]), fontsize=7)
    ax.axhline(98.5, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("shifted val accuracy, in-family (%, out-of-fold)")
    ax.set_ylabel("clean val accuracy (%, out-of-fold)")
    ax.set_title("stack fitted under a clean floor: nested out-of-fold scores", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


if __name__ == "__main__":
    raise SystemExit(main())
