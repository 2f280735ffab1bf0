"""How much clean accuracy must a weighted vote give up for robustness? The clean-vs-shifted frontier.

    python benchmarks/vote_frontier.py RUN [RUN ...] --data ../shared/data/pbc128 --name vote_frontier_pbc_cpu

The robust vote fit (``vote_fit_shift``) minimises one log-loss over clean and shifted rows, and
on ``pbc-cpu`` it lands near the robust members (96.6% clean). This benchmark asks whether another
point on the trade-off exists: it scores every weight vector of a simplex grid over the members on
clean val and on shifted copies of it (the robust fit's families and severities), then, for each
clean-accuracy floor, picks the most robust weights that keep the floor on one half of the images
and scores them on the other half (2-fold, by image; a shifted copy stays with its image).

The shifted families are the fit's, so the robustness measured here is in-family for these
votes: it says what a floor-constrained fit would hold, not how it generalises to unseen shifts.

Writes ``benchmarks/results/<name>.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))

from machine import describe, one_line

FAMILIES = ["colour", "illumination", "optics", "sensor", "artefacts"]
SEVERITIES = (2, 4)
FLOORS = (0.97, 0.975, 0.98, 0.985, 0.99)


def member_probs(runs: list[Path], data: str, seed: int) -> tuple[list[str], int, np.ndarray, np.ndarray, np.ndarray]:
    """Names, input size, clean probs (M, N, C), shifted probs (M, K, N, C) and labels of val.

    The ensemble build's own path: members at the ensemble's input size (smaller ones resize in their
    graph) and the robust fit's shifted copies (:func:`ensemble.robust.shifted_member_probs`).
    """
    from ensemble.members import MemberProbs, open_members
    from ensemble.robust import shifted_member_probs

    source = MemberProbs(open_members(runs), data=data, batch_size=128)
    clean, labels = source.split("val")
    copies = shifted_member_probs(source, "val", FAMILIES, SEVERITIES, seed, batch_size=128)  # K x (M, N, C)
    names = [m.name for m in source.members]
    for name, p in zip(names, clean):
        print(f"{name}: clean {np.mean(p.argmax(1) == labels):.4f}", flush=True)
    shifted = np.stack(copies, axis=1).astype(np.float32)
    return names, source.input_size, clean, shifted, np.asarray(labels)


def scores(w: np.ndarray, clean: np.ndarray, shifted: np.ndarray, y: np.ndarray, rows: np.ndarray) -> tuple:
    """Clean and mean shifted accuracy of each weight vector (W, M) on the image rows ``rows``."""
    c = np.einsum("wm,mnc->wnc", w, clean[:, rows]).argmax(-1) == y[rows]
    s = np.einsum("wm,mknc->wknc", w, shifted[:, :, rows]).argmax(-1) == y[rows]
    return c.mean(1), s.mean((1, 2))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="member run folders")
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", type=int, default=8, help="grid resolution: weights in multiples of 1/steps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", required=True)
    args = ap.parse_args(argv)

    from ensemble.voting import simplex_grid

    names, size, clean, shifted, y = member_probs(args.runs, args.data, args.seed)
    w = simplex_grid(len(names), args.steps)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(y))
    halves = [np.sort(order[: len(y) // 2]), np.sort(order[len(y) // 2 :])]
    all_rows = np.arange(len(y))
    full_c, full_s = scores(w, clean, shifted, y, all_rows)

    picks = []
    for floor in FLOORS:
        held = []
        for a, b in ((0, 1), (1, 0)):
            ca, sa = scores(w, clean, shifted, y, halves[a])
            ok = np.flatnonzero(ca >= floor)
            if not len(ok):
                held = []
                break
            i = ok[np.argmax(sa[ok] + 1e-6 * ca[ok])]
            cb, sb = scores(w[i : i + 1], clean, shifted, y, halves[b])
            held.append((w[i], float(cb[0]), float(sb[0])))
        if held:
            picks.append(
                {
                    "floor": floor,
                    "clean": float(np.mean([h[1] for h in held])),
                    "shifted": float(np.mean([h[2] for h in held])),
                    "weights_per_fold": [dict(zip(names, map(float, h[0]))) for h in held],
                }
            )
    singles = []
    for j, n in enumerate(names):
        one = np.zeros((1, len(names)))
        one[0, j] = 1
        c, s = scores(one, clean, shifted, y, all_rows)
        singles.append({"name": n, "clean": float(c[0]), "shifted": float(s[0])})

    res = {
        "machine": one_line(describe()),
        "members": [str(r) for r in args.runs],
        "size": size,
        "families": FAMILIES,
        "severities": list(SEVERITIES),
        "grid": {"steps": args.steps, "points": len(w)},
        "n": len(y),
        "singles": singles,
        "floors": picks,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(res, indent=2) + "\n")
    L = [
        "# Weighted vote: clean vs shifted frontier",
        "",
        f"Machine: {res['machine']}. Members at {size} px: {', '.join(f'`{r}`' for r in res['members'])}. "
        f"Val, {len(y)} images; shifted = mean over {len(FAMILIES)} families x severities {list(SEVERITIES)} "
        f"(`zoo.shift`, seed {args.seed}) — the robust fit's families, so in-family for these votes. "
        f"Grid: weights in multiples of 1/{args.steps} ({len(w)} vectors).",
        "",
        "## Members alone (all val images)",
        "",
        "| member | clean | shifted |",
        "|---|---|---|",
    ]
    L += [f"| {s['name']} | {100 * s['clean']:.2f} | {100 * s['shifted']:.2f} |" for s in singles]
    L += [
        "",
        "## Most robust vote that keeps a clean floor (chosen on one half of val, scored on the other; mean of both ways)",
        "",
        "| clean floor | clean (held-out half) | shifted (held-out half) | weights (fold 1) |",
        "|---|---|---|---|",
    ]
    for p in picks:
        wts = ", ".join(f"{k} {v:.2f}" for k, v in p["weights_per_fold"][0].items() if v > 0)
        L.append(f"| {100 * p['floor']:.1f}% | {100 * p['clean']:.2f} | {100 * p['shifted']:.2f} | {wts} |")
    (RESULTS / f"{args.name}.md").write_text("\n".join(L) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    ax.scatter(
        100 * full_c, 100 * full_s, s=6, alpha=0.3, color="grey", label="weighted votes (grid, all val: in-sample)"
    )
    for s in singles:
        ax.scatter([100 * s["clean"]], [100 * s["shifted"]], s=50, color="tab:blue")
        ax.annotate(
            s["name"], (100 * s["clean"], 100 * s["shifted"]), xytext=(4, 3), textcoords="offset points", fontsize=8
        )
    ax.plot(
        [100 * p["clean"] for p in picks],
        [100 * p["shifted"] for p in picks],
        "o-",
        color="tab:orange",
        label="floor-constrained pick (held-out half)",
    )
    ax.set_xlabel("clean val accuracy (%)")
    ax.set_ylabel("mean accuracy on shifted val copies (%, in-family)")
    ax.set_title("How much clean accuracy robustness costs a weighted vote")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(RESULTS / f"{args.name}.png")
    print("\n".join(L))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
