"""Test-time magnification adaptation on PBC: does undoing a set's measured magnification win back
what scale changes cost, without costing anything elsewhere?

    python benchmarks/magnification.py FOLDER [FOLDER ...] --data ../shared/data/pbc128 --name magnification

Each artifact folder (member, student, ensemble) is scored on the shift suite twice on the same
images: as it is, and with :class:`zoo.magnification.MagnificationAdapter` measuring each
acquisition (the clean set; within a cell, the images of one corruption) against the training
images of the classes the model predicts, and resampling it back (iterated to the fixed point when the
first reading is beyond the tolerance). Geometry is out-of-family for
every model here: none trained on scale, and the ruler is a fixed measurement, not fitted to zooms.
The adapted run scores every family, so a ruler that misreads blur or vignetting as magnification
shows up as a loss there. Also reported: what the ruler read per corruption and severity against
the suite's nominal magnification, and on sets of one class (the class-mix check).

Nothing is written into the artifact folders (the suite runs in memory). Writes
``benchmarks/results/<name>.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))

from machine import describe, one_line

FIRST_RULER = "grey-od-acf-1"  # results written before the ruler was named were made with this one


def nominal(corruption: str, level: float) -> float:
    """The suite's mean magnification for a zoom corruption at ``level`` (factor 1 + level·U(0.8, 1))."""
    f = 1 + 0.9 * level
    return f if corruption == "zoom_in" else 1 / f


def stored_results(folder: Path, ds, seed: int, max_images: int) -> dict | None:
    """The artifact's own plain suite results when they scored these very images (all families), else None."""
    from zoo.errors import ZooError
    from zoo.shift import FAMILY_ORDER
    from zoo.shift.report import load_results

    try:
        r = load_results(folder)
    except ZooError:
        return None
    same = (
        r.get("seed") == seed
        and r.get("max_images") == max_images
        and r.get("data", {}).get("split") == "val"
        and r.get("data", {}).get("fingerprint") == ds.fingerprint
        and set(r["families"]) == set(FAMILY_ORDER)
    )
    return r if same else None


def score(folder: Path, data: str, max_images: int, seed: int, datasets: dict) -> dict:
    import ensemble  # noqa: F401  (registers the ensemble predictor)
    from zoo.artifacts import read_card
    from zoo.data import load_dataset
    from zoo.evaluate import data_description
    from zoo.magnification import MagnificationAdapter
    from zoo.predictors import load_predictor
    from zoo.shift.families import artifact_families
    from zoo.shift.suite import evaluate_suite, summarise

    card = read_card(folder)
    size = int(card["input"]["image_size"])
    if size not in datasets:
        datasets[size] = load_dataset(data, size, seed=data_description(folder, card).get("seed", 0))
    ds = datasets[size]
    val = ds.split("val")
    predict = load_predictor(folder, card)
    fams = artifact_families(folder, card)
    t = time.time()
    plain = stored_results(folder, ds, seed, max_images)
    plain_from = "the artifact's eval/shift_suite.json" if plain is not None else "scored here"
    if plain is None:
        plain = evaluate_suite(predict, val.images, val.labels, ds.class_names, seed=seed, max_images=max_images)
    plain = summarise(plain, fams)
    t_plain = time.time() - t
    adapter = MagnificationAdapter.from_dataset(ds, predict)
    t = time.time()
    adapted = summarise(
        evaluate_suite(
            predict, val.images, val.labels, ds.class_names, seed=seed, max_images=max_images, adapt=adapter
        ),
        fams,
    )
    t_adapted = time.time() - t
    per_class = {}
    for c, name in enumerate(ds.class_names):
        rows = np.flatnonzero(val.labels == c)[:200]
        per_class[name] = adapter.measure(val.images[rows])
    return {
        "folder": str(folder),
        "name": card["name"],
        "kind": card["kind"],
        "size": size,
        "trained_families": fams,
        "plain": plain,
        "adapted": adapted,
        "one_class_sets": per_class,
        "seconds": {"plain": round(t_plain, 1), "adapted": round(t_adapted, 1)},
        "plain_from": plain_from,
    }


def _pct(v):
    return "—" if v is None else f"{100 * v:.1f}"


def _family_cell(m: dict, fam: str) -> str:
    p, a = m["plain"], m["adapted"]
    star = "*" if fam in p["in_family"] else ""
    return f"{_pct(p['families'][fam]['mean_accuracy'])} → {_pct(a['families'][fam]['mean_accuracy'])}{star}"


def markdown(res: dict) -> str:
    from zoo.shift import CORRUPTIONS, FAMILY_ORDER

    lines = [
        "# Test-time magnification adaptation (`zoo.magnification`)",
        "",
        f"Machine: {res['machine']}. Commit {res['commit']}. Data: {res['data']} val, shift suite "
        f"(`zoo.shift`, seed {res['seed']}, {res['models'][0]['plain']['n']} images per cell). "
        "Each model scored as it is and with each acquisition's magnification measured (class rulers from "
        "the training images, classes predicted by the model itself) and, when the first reading is beyond ±8%, "
        "iterated to the magnification at which the resampled set reads as the training images "
        f"(ruler `{res.get('ruler', FIRST_RULER)}`).",
        "",
        "## Accuracy, as it is → adapted",
        "",
        "Geometry (zoom in/out, ×1.07–1.41) is out-of-family for every model here. `*` marks a family the model "
        "(or its teacher or fit) trained on.",
        "",
        "| model | clean | geometry | "
        + " | ".join(f for f in FAMILY_ORDER if f != "geometry")
        + " | mean out-of-family |",
        "|---|---|---|" + "---|" * (len(FAMILY_ORDER) - 1) + "---|",
    ]
    for m in res["models"]:
        p, a = m["plain"], m["adapted"]
        lines.append(
            f"| `{m['name']}` ({m['kind']}) | {_pct(p['clean']['accuracy'])} → {_pct(a['clean']['accuracy'])} | "
            f"**{_family_cell(m, 'geometry')}** | "
            + " | ".join(_family_cell(m, f) for f in FAMILY_ORDER if f != "geometry")
            + f" | {_pct(p['mean_out_of_family_accuracy'])} → {_pct(a['mean_out_of_family_accuracy'])} |"
        )
    first = res["models"][0]["adapted"]
    geo = first["families"]["geometry"]
    sev = [str(s) for s in first["severities"]]
    lines += [
        "",
        "## Geometry by severity, as it is → adapted",
        "",
        "| model | " + " | ".join(f"s{s}" for s in sev) + " |",
        "|---|" + "---|" * len(sev),
    ]
    for m in res["models"]:
        pg, ag = m["plain"]["families"]["geometry"], m["adapted"]["families"]["geometry"]
        lines.append(
            f"| `{m['name']}` | "
            + " | ".join(
                f"{_pct(pg['severities'][s]['accuracy'])} → {_pct(ag['severities'][s]['accuracy'])}" for s in sev
            )
            + " |"
        )
    lines += [
        "",
        f"## What the ruler read (classes from `{res['models'][0]['name']}`)",
        "",
        "| corruption | " + " | ".join(f"s{s}" for s in sev) + " |",
        "|---|" + "---|" * len(sev),
    ]
    for name in geo["corruptions"]:
        reads = [geo["severities"][s]["adapt"].get(name) for s in sev]
        nom = [nominal(name, CORRUPTIONS[name].levels[int(s) - 1]) for s in sev]
        lines.append(
            f"| {name} (read / nominal) | "
            + " | ".join(f"×{r:.2f} / ×{n:.2f}" if r is not None else f"— / ×{n:.2f}" for r, n in zip(reads, nom))
            + " |"
        )
    worst = []
    for fam, f in first["families"].items():
        if fam == "geometry":
            continue
        for name in f["corruptions"]:
            reads = [f["severities"][s]["adapt"].get(name) for s in sev]
            reads = [r for r in reads if r is not None]
            if reads:
                worst.append((max(reads, key=lambda r: abs(r - 1)), fam, name))
    worst.sort(key=lambda w: -abs(w[0] - 1))
    lines += [
        "",
        "Other families (no magnification change; a reading beyond ±8% would resample them wrongly): the "
        "largest misreadings over all severities were "
        + "; ".join(f"{name} ({fam}) ×{r:.2f}" for r, fam, name in worst[:6])
        + f". Clean val read ×{first['clean']['adapt']:.3f}.",
        "",
        "Sets of one class (clean val, up to 200 images each; classes predicted): "
        + ", ".join(
            f"{k} ×{v:.2f}" if v is not None else f"{k} —" for k, v in res["models"][0]["one_class_sets"].items()
        )
        + ".",
        "",
        "Times (seconds, suite as it is / adapted, including the ruler readings and the extra prediction passes): "
        + "; ".join(f"`{m['name']}` {m['seconds']['plain']} / {m['seconds']['adapted']}" for m in res["models"])
        + ".",
    ]
    return "\n".join(lines) + "\n"


def plot(res: dict, path: Path) -> None:
    from zoo import plots

    plt = plots.plt
    sev = res["models"][0]["plain"]["severities"]
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for i, m in enumerate(res["models"]):
        for key, style in (("plain", "--"), ("adapted", "-")):
            r = m[key]
            ys = [r["clean"]["accuracy"]] + [r["families"]["geometry"]["severities"][str(s)]["accuracy"] for s in sev]
            ax.plot([0, *sev], ys, style, marker="o", ms=3, color=f"C{i}", label=f"{m['name']} ({key})")
    ax.set_xlabel("geometry severity (0 = clean)")
    ax.set_ylabel("accuracy")
    ax.set_title("Magnification changes, as it is (dashed) and adapted per set (solid)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    plots.save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", type=Path, help="member, student or ensemble folders")
    ap.add_argument("--data", required=True)
    ap.add_argument("--max-images", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", required=True)
    ap.add_argument(
        "--with",
        dest="earlier",
        type=Path,
        help="a results JSON of this script (same data and seed) whose models are listed first, e.g. to add a "
        "student scored after its ensembles",
    )
    args = ap.parse_args(argv)
    from zoo.magnification import RULER

    datasets: dict = {}
    models = []
    commits = []
    if args.earlier:
        old = json.loads(args.earlier.read_text())
        if old.get("data") != args.data or old.get("seed") != args.seed:
            raise SystemExit(f"{args.earlier}: scored on other data or another seed")
        if old.get("ruler", FIRST_RULER) != RULER:
            raise SystemExit(f"{args.earlier}: adapted with another magnification ruler than {RULER}")
        models, commits = list(old["models"]), [old["commit"]]
    for folder in args.folders:
        print(f"scoring {folder} ...", flush=True)
        models.append(score(folder, args.data, args.max_images, args.seed, datasets))
        g = models[-1]
        print(
            f"  geometry {g['plain']['families']['geometry']['mean_accuracy']:.4f} -> "
            f"{g['adapted']['families']['geometry']['mean_accuracy']:.4f}, clean {g['plain']['clean']['accuracy']:.4f}"
            f" -> {g['adapted']['clean']['accuracy']:.4f}",
            flush=True,
        )
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=HERE.parent, capture_output=True, text=True
    ).stdout.strip()
    res = {
        "ruler": RULER,
        "machine": one_line(describe()),
        "commit": ", ".join(dict.fromkeys([*commits, head])),
        "data": args.data,
        "seed": args.seed,
        "models": models,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(res, indent=2, default=float) + "\n")
    (RESULTS / f"{args.name}.md").write_text(markdown(res))
    plot(res, RESULTS / f"{args.name}.png")
    print(f"wrote {RESULTS / args.name}.{{json,md,png}}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
