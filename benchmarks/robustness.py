"""Benchmark (issue 10 item 3): which recipe survives the shift it never trained on?

Scores trained member runs on PBC val (64 px), clean and on every family of the shift suite
(:mod:`zoo.shift`, 5 severities each), and separates in-family from out-of-family results by
the families each run's training augmentation covers (card ``augment_families``). Approaches:

- the runs given (e.g. ``flip_rot90`` baseline, ``shift`` policy, ``input_norm`` in the graph,
  HED stain + AugMix augmentation), as trained;
- each BatchNorm run again with test-time BN adaptation (:mod:`zoo.adapt`): statistics
  re-estimated on each (family, severity) cell's unlabelled images, as a lab would on its slides;
- soft-vote and stacking ensembles of the runs, combiner fitted on clean val only (today's
  practice) or on clean + shifted val ("robust fit"), scored leave-one-family-out: for a held-out
  family ``f`` only members that did not train on ``f`` take part, the combiner is fitted on clean
  rows plus shifted rows of the *other* families, and it is scored on ``f``. Rows are
  cross-fitted in two image folds (a row is scored by a combiner fitted on the other half), so
  no image helps score itself.

    python benchmarks/robustness.py --runs base_flip=/work/runs_robust/members/base_flip \\
        od_flip=/work/runs_robust/members/od_flip ... --data ../shared/data/pbc128

Writes benchmarks/results/robustness.{json,md,png}; member probabilities are cached next to the
runs (``--cache``) so a rerun only recomputes what changed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import conditions, describe, one_line

RESULTS = Path(__file__).resolve().parent / "results"
log = logging.getLogger("robustness")


def _cells(families, severities):
    return [(f, s) for f in families for s in severities]


def corrupted_sets(images, families, severities, seed, cache: Path | None = None):
    """{(family, severity): corrupted uint8 images}; cached per cell under ``cache`` (keyed by the images' hash)."""
    import hashlib

    from zoo.shift import corrupt

    key = hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()[:12]
    out = {}
    for f, s in _cells(families, severities):
        path = cache / f"corrupt_{key}_{f}_{s}_{seed}.npy" if cache else None
        if path is not None and path.exists():
            out[(f, s)] = np.load(path)
            continue
        t = time.time()
        out[(f, s)] = corrupt(images, f, s, seed)
        log.info("corrupted %s/%d in %.1fs", f, s, time.time() - t)
        if path is not None:
            np.save(path, out[(f, s)])
    return out


def member_probs(run, subset, shifted, adapt: bool, batch_size=256):
    """{'clean', (f, s)...} -> probabilities; with ``adapt``, BN re-estimated on each cell's images."""
    from zoo.adapt import adapt_batchnorm, batchnorm_layers
    from zoo.evaluate import predict_model
    from zoo.runs import load_model

    model = load_model(run)
    bns = batchnorm_layers(model)
    if adapt and not bns:
        return None
    source = [(b.moving_mean.numpy().copy(), b.moving_variance.numpy().copy()) for b in bns]

    def predict(x):
        if adapt:
            for b, (m, v) in zip(bns, source):
                b.moving_mean.assign(m)
                b.moving_variance.assign(v)
            adapt_batchnorm(model, x, batch_size=128)
        return predict_model(model, x, batch_size)

    out = {"clean": predict(subset)}
    for key, x in shifted.items():
        out[key] = predict(x)
    return out


def acc(p, y):
    return float((p.argmax(1) == y).mean())


def family_table(probs, y, families, severities):
    return {f: {str(s): acc(probs[(f, s)], y) for s in severities} for f in families}


def corruption_table(probs, y, families, severity, seed):
    """Accuracy per corruption at one severity (a family cell draws one corruption per image from the seed)."""
    from zoo.shift import FAMILIES, _seed

    out = {}
    for f in families:
        pick = _seed(seed, f).integers(0, len(FAMILIES[f]), len(y))
        for j, c in enumerate(FAMILIES[f]):
            m = pick == j
            if m.any():
                out[c] = acc(probs[(f, severity)][m], y[m])
    return out


def summary(name, kind, fams_trained, probs, y, val_accuracy, families, severities, extra=None):
    table = family_table(probs, y, families, severities)
    inside = [f for f in families if f in set(fams_trained or ())]
    outside = [f for f in families if f not in inside]
    mean = {f: float(np.mean(list(v.values()))) for f, v in table.items()}
    row = {
        "name": name,
        "kind": kind,
        "augment_families": sorted(fams_trained or []),
        "clean_val_full": val_accuracy,
        "clean_subset": acc(probs["clean"], y),
        "families": table,
        "family_mean": mean,
        "in_family": inside,
        "out_of_family": outside,
        "mean_out_of_family": float(np.mean([mean[f] for f in outside])) if outside else None,
        "mean_in_family": float(np.mean([mean[f] for f in inside])) if inside else None,
    }
    row["gap_out_of_family"] = (row["clean_subset"] - row["mean_out_of_family"]) if outside else None
    row.update(extra or {})
    return row


# ----------------------------------------------------------------------------- ensembles (d)
def _folds(y, seed=0):
    rng = np.random.default_rng(seed)
    fold = np.zeros(len(y), int)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        fold[idx[: len(idx) // 2]] = 1
    return fold


def _fit(method, mp, y):
    from ensemble.stacking import fit_stack
    from ensemble.voting import fit_vote

    if mp.shape[0] == 1:
        return {"method": "vote", "weights": [1.0], "temperature": 1.0, "eps": 1e-7}
    return fit_vote(mp, y) if method == "vote" else fit_stack(mp, y)


def _apply(spec, mp):
    from ensemble.combine import combine

    return combine(spec, mp)


def lofo_ensembles(member_rows, probs_by_member, y, families, severities, method):
    """Leave-one-family-out ensemble scores, clean-fit vs robust-fit (clean + other families' shifted val)."""
    fold = _folds(y)
    out = {"clean_fit": {}, "robust_fit": {}, "members_used": {}, "weights": {}}
    for held in families:
        names = [r["name"] for r in member_rows if held not in r["augment_families"]]
        out["members_used"][held] = names
        if not names:
            continue
        fit_fams = [f for f in families if f != held]

        def stack(key, names=tuple(names)):
            return np.stack([probs_by_member[n][key] for n in names])

        clean = stack("clean")
        for variant in ("clean_fit", "robust_fit"):
            scored = {s: np.zeros((len(y), clean.shape[2])) for s in severities}
            clean_scored = np.zeros_like(clean[0])
            for k in (0, 1):
                tr, te = fold != k, fold == k
                mp, yy = [clean[:, tr]], [y[tr]]
                if variant == "robust_fit":
                    for f in fit_fams:
                        for s in severities:
                            mp.append(stack((f, s))[:, tr])
                            yy.append(y[tr])
                spec = _fit(method, np.concatenate(mp, axis=1), np.concatenate(yy))
                if k == 0 and method == "vote":
                    out["weights"].setdefault(variant, {})[held] = dict(
                        zip(names, np.round(spec["weights"], 3).tolist())
                    )
                for s in severities:
                    scored[s][te] = _apply(spec, stack((held, s))[:, te])
                clean_scored[te] = _apply(spec, clean[:, te])
            out[variant][held] = {
                "severities": {str(s): acc(scored[s], y) for s in severities},
                "mean": float(np.mean([acc(scored[s], y) for s in severities])),
                "clean": acc(clean_scored, y),
            }
    for variant in ("clean_fit", "robust_fit"):
        v = out[variant]
        if v:
            out[f"{variant}_mean_out_of_family"] = float(np.mean([v[f]["mean"] for f in v]))
            out[f"{variant}_mean_clean"] = float(np.mean([v[f]["clean"] for f in v]))
    return out


# ----------------------------------------------------------------------------- report
def write_markdown(path, res):
    fams = res["families"]
    lines = [
        f"# Robustness ablation on PBC val, 64 px ({res['date']})",
        "",
        f"Machine: {res['machine_line']}. Load: {res['load']}.",
        "",
        f"Command: `{res['command']}`",
        "",
        (
            f"Shift suite `zoo.shift`, severities {res['severities']}, seed {res['seed']}, on a stratified subset of "
            f"{res['n_subset']} val images (column 'val (full)' is the run card's accuracy on the full val split, "
            f"n={res['n_val']}). Cells are mean accuracy over severities; **in-family cells (the run trained on that "
            "family) are in brackets and never count**; 'OOF mean' is the mean over the families the run did NOT "
            "train on, 'gap' = clean subset − OOF mean."
        ),
        "",
        "| approach | trained families | val (full) | clean (subset) | " + " | ".join(fams) + " | OOF mean | gap |",
        "|---|---|---|---|" + "---|" * len(fams) + "---|---|",
    ]
    for r in res["rows"]:
        cells = [f"[{r['family_mean'][f]:.3f}]" if f in r["in_family"] else f"{r['family_mean'][f]:.3f}" for f in fams]
        full = f"{r['clean_val_full']:.4f}" if r.get("clean_val_full") is not None else "—"
        oof = f"{r['mean_out_of_family']:.3f}" if r["mean_out_of_family"] is not None else "—"
        gap = f"{100 * r['gap_out_of_family']:.1f} pt" if r["gap_out_of_family"] is not None else "—"
        lines.append(
            f"| {r['name']} | {', '.join(r['augment_families']) or 'none'} | {full} | {r['clean_subset']:.3f} | "
            + " | ".join(cells)
            + f" | {oof} | {gap} |"
        )
    lines += [
        "",
        "## Ensembles, leave-one-family-out",
        "",
        "For each held-out family: only members that did not train on it; combiner fitted on clean val rows "
        "(clean fit) or on clean + shifted val rows of the other five families (robust fit), cross-fitted over "
        "two image folds.",
        "",
    ]
    for method, e in res["ensembles"].items():
        lines += [
            f"### {method}",
            "",
            "| held-out family | members | clean-fit acc | robust-fit acc | clean-fit clean | robust-fit clean |",
            "|---|---|---|---|---|---|",
        ]
        for f in fams:
            if f not in e["clean_fit"]:
                lines.append(f"| {f} | none eligible | — | — | — | — |")
                continue
            c, r = e["clean_fit"][f], e["robust_fit"][f]
            lines.append(
                f"| {f} | {', '.join(e['members_used'][f])} | {c['mean']:.3f} | {r['mean']:.3f} | {c['clean']:.3f} | {r['clean']:.3f} |"
            )
        if "clean_fit_mean_out_of_family" in e:
            lines.append(
                f"| **mean** | | {e['clean_fit_mean_out_of_family']:.3f} | {e['robust_fit_mean_out_of_family']:.3f} | "
                f"{e['clean_fit_mean_clean']:.3f} | {e['robust_fit_mean_clean']:.3f} |"
            )
        if e.get("weights"):
            lines += ["", "Vote weights (fold 0): " + json.dumps(e["weights"])]
        lines.append("")
    top = max(res["severities"])
    names = list(res["rows"][0]["by_corruption_at_max_severity"])
    lines += [
        f"## Per corruption at severity {top}",
        "",
        "| corruption | " + " | ".join(r["name"] for r in res["rows"]) + " |",
        "|---|" + "---|" * len(res["rows"]),
    ]
    for c in names:
        lines.append(
            f"| {c} | "
            + " | ".join(f"{r['by_corruption_at_max_severity'].get(c, float('nan')):.2f}" for r in res["rows"])
            + " |"
        )
    lines.append("")
    if res.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in res["notes"]]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def plot(path, res):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from zoo.plots import save_figure

    fams, rows = res["families"], res["rows"]
    fig, axes = plt.subplots(1, 2, figsize=(15, 5), gridspec_kw={"width_ratios": [3, 2]})
    ax = axes[0]
    width = 0.8 / max(1, len(rows))
    for i, r in enumerate(rows):
        xs = np.arange(len(fams)) + i * width
        vals = [r["family_mean"][f] for f in fams]
        bars = ax.bar(xs, vals, width, label=r["name"])
        for b, f in zip(bars, fams):
            if f in r["in_family"]:
                b.set_hatch("//")
                b.set_alpha(0.35)
    ax.set_xticks(np.arange(len(fams)) + 0.4 - width / 2, fams)
    ax.set_ylim(0, 1)
    ax.set_ylabel("mean accuracy over severities 1–5")
    ax.set_title("per family (hatched = in-family, not a robustness claim)")
    ax.legend(fontsize=7, ncol=2, loc="lower left")
    ax = axes[1]
    sev = [str(s) for s in res["severities"]]
    for r in rows:
        for f, style in (("colour", "-"), ("illumination", "--")):
            if f in r["out_of_family"]:
                ax.plot(
                    [0] + [int(s) for s in sev],
                    [r["clean_subset"]] + [r["families"][f][s] for s in sev],
                    style,
                    marker="o",
                    ms=3,
                    label=f"{r['name']} · {f}",
                )
    ax.set_xlabel("severity (0 = clean)")
    ax.set_ylim(0, 1)
    ax.set_title("out-of-family colour (—) and illumination (--)")
    ax.legend(fontsize=6)
    fig.suptitle(f"PBC val 64 px · shift suite · {res['machine_line']}", fontsize=9)
    save_figure(fig, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", required=True, help="NAME=RUN_FOLDER ...")
    ap.add_argument("--data", default="../shared/data/pbc128")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--max-images", type=int, default=600)
    ap.add_argument("--severities", default="1,2,3,4,5")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--adapt", default="all", help="runs (comma list, 'all' or 'none') also scored with BN adaptation")
    ap.add_argument("--only", default="", help="predict only these runs (cache), then stop")
    ap.add_argument("--corrupt-only", action="store_true", help="only fill the cache of corrupted images, then stop")
    ap.add_argument("--cache", default="/work/runs_robust/bench_cache")
    ap.add_argument("--note", action="append", default=[])
    ap.add_argument("--name", default="robustness")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    from zoo.artifacts import read_card
    from zoo.data import load_dataset
    from zoo.shift import FAMILIES
    from zoo.shift.families import artifact_families
    from zoo.shift.suite import stratified_subset

    t0 = time.time()
    before = conditions()
    runs = dict(r.split("=", 1) for r in args.runs)
    if args.only:  # fill the probability cache for these runs only (run several in parallel, then aggregate)
        runs = {k: v for k, v in runs.items() if k in args.only.split(",")}
    severities = [int(s) for s in args.severities.split(",")]
    families = list(FAMILIES)
    data = load_dataset(args.data, args.image_size)
    val = data.split("val")
    idx = stratified_subset(val.labels, args.max_images, args.seed)
    x, y = val.images[idx], np.asarray(val.labels)[idx]
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    shifted = corrupted_sets(x, families, severities, args.seed, cache)
    if args.corrupt_only:
        return 0

    rows, probs_by_member = [], {}
    for name, run in runs.items():
        fams = artifact_families(run) or []
        card = read_card(run)
        val_acc = (card.get("metrics", {}).get("val") or {}).get("accuracy")
        for adapt in (False, True):
            if adapt and not (args.adapt == "all" or name in args.adapt.split(",")):
                continue
            key = f"{name}{'+adaptbn' if adapt else ''}"
            f = cache / f"{key}_{args.max_images}_{args.seed}_{args.severities.replace(',', '')}.npz"
            if f.exists():
                z = np.load(f)
                probs = {k if k.startswith("clean") else (k.split("|")[0], int(k.split("|")[1])): z[k] for k in z.files}
            else:
                t = time.time()
                probs = member_probs(run, x, shifted, adapt)
                if probs is None:
                    continue
                np.savez(f, **{k if isinstance(k, str) else f"{k[0]}|{k[1]}": v for k, v in probs.items()})
                log.info("%s: predicted in %.0fs", key, time.time() - t)
            if not adapt:
                probs_by_member[name] = probs
            rows.append(
                summary(
                    key,
                    "member+adapt_bn" if adapt else "member",
                    fams,
                    probs,
                    y,
                    None if adapt else val_acc,
                    families,
                    severities,
                    {
                        "run": str(run),
                        "by_corruption_at_max_severity": corruption_table(
                            probs, y, families, max(severities), args.seed
                        ),
                    },
                )
            )
            log.info("%s: clean %.4f, OOF mean %s", key, rows[-1]["clean_subset"], rows[-1]["mean_out_of_family"])

    if args.only:
        return 0
    member_rows = [r for r in rows if r["kind"] == "member"]
    ensembles = {m: lofo_ensembles(member_rows, probs_by_member, y, families, severities, m) for m in ("vote", "stack")}
    res = {
        "benchmark": args.name,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python benchmarks/robustness.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "data": args.data,
        "image_size": args.image_size,
        "n_val": len(val.labels),
        "n_subset": len(y),
        "families": families,
        "severities": severities,
        "seed": args.seed,
        "rows": rows,
        "ensembles": ensembles,
        "notes": args.note,
        "machine": describe(),
        "machine_line": one_line(describe()),
        "conditions_before": before,
        "conditions_after": conditions(),
        "seconds": round(time.time() - t0, 1),
    }
    res["load"] = (
        f"load average (1, 5, 15 min) {before.get('loadavg_1_5_15')} at start, "
        f"{res['conditions_after'].get('loadavg_1_5_15')} at end"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(res, indent=1, default=str) + "\n", encoding="utf-8")
    write_markdown(RESULTS / f"{args.name}.md", res)
    plot(RESULTS / f"{args.name}.png", res)
    print((RESULTS / f"{args.name}.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
