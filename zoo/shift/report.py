"""Run the shift suite on an artifact folder and write ``<folder>/eval/shift_suite.{json,md,png}``.

``evaluate_artifact`` works for every kind whose predictor is registered in
:mod:`zoo.predictors` (members and students always; ensembles and exports once their packages
are imported, as the CLI and the pipeline do). It reads which families the artifact trained
for (:mod:`zoo.shift.families`), so every report separates in-family from out-of-family
results, and records a compact summary in the card's ``metrics.shift_suite``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zoo.artifacts import read_card, update_card, write_json, write_text
from zoo.errors import ZooError
from zoo.shift import SEVERITIES, resolve_families
from zoo.shift.suite import DEFAULT_MAX_IMAGES, comparable, evaluate_suite, summarise

log = logging.getLogger(__name__)
RESULTS = Path("eval") / "shift_suite.json"
# The same suite with test-time magnification adaptation (zoo.magnification): its own files and card
# entry (both named by the stem, as the plain ones are), so the plain results stay what every comparison reads.
ADAPTED_STEM = "shift_suite_adapt_scale"


def results_file(stem: str = RESULTS.stem) -> Path:
    """Where an artifact keeps the suite results named ``stem``, relative to its folder (``eval/<stem>.json``)."""
    return RESULTS.parent / f"{stem}.json"


def card_summary(res: dict[str, Any], split: str, results: Path = RESULTS) -> dict[str, Any]:
    """The few numbers of a suite result that go into the card (``metrics.shift_suite``)."""
    return {
        "split": split,
        "n": res["n"],
        "clean_accuracy": res["clean"]["accuracy"],
        "mean_out_of_family_accuracy": res["mean_out_of_family_accuracy"],
        "mean_in_family_accuracy": res["mean_in_family_accuracy"],
        "mean_shifted_accuracy": res["mean_shifted_accuracy"],
        "in_family": res["in_family"],
        "out_of_family": res["out_of_family"],
        "mce": res["mce"],
        "mce_out_of_family": res["mce_out_of_family"],
        "ce_normalised": res["ce_normalised"],
        "results": results.as_posix(),
    }


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}"


def _pc(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}%"


def _trained(fams: list[str] | None) -> str:
    if fams is None:
        return "unknown (the card does not say): every family counted out-of-family"
    return ", ".join(fams) or "no family of the suite"


def markdown(res: dict[str, Any], title: str) -> str:
    sev = [str(s) for s in res["severities"]]
    ce_word = "CE (normalised)" if res["ce_normalised"] else "CE (unnormalised)"
    lines = [
        f"# Shift suite: {title}",
        "",
        (
            f"- data: {res.get('data', {}).get('source')} split `{res.get('data', {}).get('split')}`, "
            f"{res['n']} images (stratified subsample, max {res['max_images']}), seed {res['seed']}"
        ),
        f"- trained for (augmentation): {_trained(res['augment_families'])}",
        (
            f"- clean accuracy **{_pc(res['clean']['accuracy'])}**; mean out-of-family shifted accuracy "
            f"**{_pc(res['mean_out_of_family_accuracy'])}** ({', '.join(res['out_of_family']) or 'none'}); "
            f"mean in-family {_pc(res['mean_in_family_accuracy'])} ({', '.join(res['in_family']) or 'none'})"
        ),
        f"- mCE {res['mce']:.3f}"
        + (f", out-of-family mCE {res['mce_out_of_family']:.3f}" if res["mce_out_of_family"] is not None else "")
        + f" — {res['ce_definition']}",
        "",
        "| family | trained on | corruptions | "
        + " | ".join(f"acc s{s}" for s in sev)
        + f" | mean acc | mean bal. err | mean ECE | {ce_word} |",
        "|---|---|---|" + "---|" * len(sev) + "---|---|---|---|",
    ]
    for fam, r in res["families"].items():
        cells = " | ".join(_pct(r["severities"][s]["accuracy"]) for s in sev)
        lines.append(
            f"| {fam} | {'yes (in-family)' if fam in res['in_family'] else 'no (out-of-family)'} | "
            f"{', '.join(r['corruptions'])} | {cells} | {_pct(r['mean_accuracy'])} | "
            f"{_pct(r['mean_balanced_error'])} | "
            f"{_pct(r['mean_ece'])} | {res['ce'][fam]:.3f} |"
        )
    lines += ["", "Accuracy, balanced error and ECE in %. " + res["protocol"]]
    if res.get("adapt"):
        lines += ["", *_adapt_table(res)]
    worst = _worst_corruptions(res)
    if worst:
        lines += [
            "",
            "Hardest corruption per family (accuracy at the highest severity): "
            + "; ".join(f"{f}: {n} {_pc(a)}" for f, n, a in worst),
        ]
    return "\n".join(lines) + "\n"


def _adapt_table(res: dict[str, Any]) -> list[str]:
    """What the test-time adaptation measured on each acquisition (one corruption at one severity)."""
    a, sev = res["adapt"], [str(s) for s in res["severities"]]
    tol = a.get("tolerance")

    def fmt(v):
        if v is None:
            return "—"
        return f"×{v:.2f}" + ("" if tol is None or abs(v - 1) >= tol else " (kept)")

    lines = [
        f"Test-time adaptation: {a.get('method')}; each acquisition measured on its own "
        f"(class rulers {a.get('reference_px')} px on the training images at {a.get('size')} px; "
        f"within ±{tol} of ×1 the images are kept as they are). Clean: {fmt(res['clean'].get('adapt'))}.",
        "",
        "| family | corruption | " + " | ".join(f"s{s}" for s in sev) + " |",
        "|---|---|" + "---|" * len(sev),
    ]
    for fam, r in res["families"].items():
        for name in r["corruptions"]:
            vals = [r["severities"][s].get("adapt", {}).get(name) for s in sev]
            lines.append(f"| {fam} | {name} | " + " | ".join(fmt(v) for v in vals) + " |")
    return lines


def _worst_corruptions(res: dict[str, Any]) -> list[tuple[str, str, float]]:
    out = []
    for fam, r in res["families"].items():
        top = r["severities"][str(res["severities"][-1])].get("by_corruption") or {}
        if top:
            name = min(top, key=top.get)
            out.append((fam, name, top[name]))
    return out


def plot(path: str | os.PathLike, res: dict[str, Any], title: str) -> Path:
    """Accuracy and ECE against severity (0 = clean), one line per family; in-family lines dashed."""
    from zoo import plots

    plt = plots.plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    xs = [0, *res["severities"]]
    for i, (fam, r) in enumerate(res["families"].items()):
        style = "--" if fam in res["in_family"] else "-"
        label = f"{fam}{' (in-family)' if fam in res['in_family'] else ''}"
        for ax, key, clean in ((axes[0], "accuracy", res["clean"]["accuracy"]), (axes[1], "ece", res["clean"]["ece"])):
            ys = [clean] + [r["severities"][str(s)][key] for s in res["severities"]]
            ax.plot(xs, ys, style, marker="o", ms=3, color=f"C{i}", label=label)
    axes[0].set_ylabel("accuracy")
    axes[1].set_ylabel("ECE")
    for ax in axes:
        ax.set_xlabel("severity (0 = clean)")
        ax.set_xticks(xs)
        ax.grid(alpha=0.3)
    axes[0].set_ylim(0, 1.02)
    axes[1].set_ylim(bottom=0)
    axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    oof = res["mean_out_of_family_accuracy"]
    fig.suptitle(f"{title}: clean {_pc(res['clean']['accuracy'])}, out-of-family mean {_pc(oof)}", fontsize=10)
    return plots.save_figure(fig, path)


def write_results(out_dir: str | os.PathLike, res: dict[str, Any], title: str, stem: str = "shift_suite") -> Path:
    out_dir = Path(out_dir)
    write_json(out_dir / f"{stem}.json", res)
    write_text(out_dir / f"{stem}.md", markdown(res, title))
    plot(out_dir / f"{stem}.png", res, title)
    return out_dir / f"{stem}.json"


def load_results(path: str | os.PathLike, stem: str = RESULTS.stem) -> dict[str, Any]:
    """A ``shift_suite.json`` (file, or the artifact folder holding ``eval/<stem>.json``)."""
    p = Path(path)
    if p.is_dir():
        p = p / results_file(stem)
    try:
        res = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ZooError(f"{p}: no shift-suite results (run `zoo evaluate {path} --shift-suite` first)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ZooError(f"{p}: not valid JSON ({exc})") from None
    if not isinstance(res, dict) or res.get("suite") != "zoo.shift" or "families" not in res:
        raise ZooError(f"{p}: not a zoo shift-suite result")
    return res


def evaluate_artifact(
    folder: str | os.PathLike,
    data: str | None = None,
    split: str = "val",
    *,
    families: str | Sequence[str] | None = None,
    severities: Sequence[int] = SEVERITIES,
    seed: int = 0,
    max_images: int | None = DEFAULT_MAX_IMAGES,
    reference: str | os.PathLike | None = None,
    dataset=None,
    adapt_scale: bool = False,
) -> dict[str, Any]:
    """Run the suite on one artifact folder; writes ``eval/shift_suite.*`` and ``metrics.shift_suite``.

    ``reference`` (an artifact folder or a ``shift_suite.json``) normalises CE as in ImageNet-C;
    a reference folder without comparable stored results is scored on the same images in memory.
    ``adapt_scale`` first undoes each acquisition's magnification, measured against the data's
    training split (:mod:`zoo.magnification`); it writes ``eval/shift_suite_adapt_scale.*`` and
    ``metrics.shift_suite_adapt_scale`` instead.
    """
    from zoo.data import load_dataset
    from zoo.evaluate import data_description
    from zoo.predictors import load_predictor
    from zoo.shift.families import artifact_families

    folder = Path(folder)
    card = read_card(folder)
    fams = resolve_families(families)
    dcard = data_description(folder, card)
    if dataset is None:
        source = data or dcard.get("source")
        if not source:
            raise ZooError(f"{folder}: the card names no data source; pass --data")
        dataset = load_dataset(source, int(card["input"]["image_size"]), seed=dcard.get("seed", 0))
    if list(dataset.class_names) != list(card["classes"]):
        raise ZooError(f"{folder}: model classes {card['classes']} differ from the data's {dataset.class_names}")
    part = dataset.split(split)
    predict = load_predictor(folder, card)
    adapt = None
    if adapt_scale:
        from zoo.magnification import MagnificationAdapter

        adapt = MagnificationAdapter.from_dataset(dataset, predict)
    res = evaluate_suite(
        predict, part.images, part.labels, dataset.class_names, fams, severities, seed, max_images, adapt=adapt
    )
    res["data"] = {"source": dataset.source, "fingerprint": dataset.fingerprint, "split": split}
    res["artifact"] = {"name": card["name"], "kind": card["kind"], "folder": str(folder)}

    ref_res, ref_name = None, None
    if reference is not None and Path(reference).resolve() == folder.resolve():
        ref_res, ref_name = res, card["name"]  # the reference model itself: CE = 1 by definition
    elif reference is not None:
        ref_res, ref_name = _reference(reference, res, part, dataset.class_names, fams, severities, seed, max_images)
    res = summarise(res, artifact_families(folder, card), ref_res, ref_name)
    stem = ADAPTED_STEM if adapt_scale else RESULTS.stem
    title = f"{card['name']} ({card['kind']})" + (", magnification adapted per set" if adapt_scale else "")
    write_results(folder / "eval", res, title, stem)
    metrics = dict(card.get("metrics", {}))
    metrics[stem] = card_summary(res, split, results_file(stem))
    update_card(folder, verify=False, metrics=metrics)  # verified on entry
    log.info(
        "%s: clean %.4f, out-of-family shifted %s (%s), mCE %.3f%s",
        card["name"],
        res["clean"]["accuracy"],
        "n/a" if res["mean_out_of_family_accuracy"] is None else f"{res['mean_out_of_family_accuracy']:.4f}",
        ", ".join(res["out_of_family"]) or "no family",
        res["mce"],
        "" if res["ce_normalised"] else " (unnormalised)",
    )
    return res


def _reference(reference, res, part, class_names, fams, severities, seed, max_images):
    """The reference's results on the same images: its stored ones if comparable, else scored in memory.

    The reference folder is never written to: it is read to normalise, not asked to be evaluated.
    """
    from zoo.predictors import load_predictor

    ref = Path(reference)
    if ref.is_file():
        ref_res = load_results(ref)
        if not comparable(ref_res, res):
            raise ZooError(
                f"{ref}: the reference was scored on other images or settings "
                "(seed, subsample, severities or data differ)"
            )
        return ref_res, str(ref_res.get("artifact", {}).get("name") or ref)
    if not (ref / "card.json").is_file():
        raise ZooError(f"--reference {ref}: give an artifact folder or its eval/shift_suite.json")
    try:
        ref_res = load_results(ref)
    except ZooError:
        ref_res = None
    ref_card = read_card(ref)
    if list(ref_card["classes"]) != list(class_names):
        raise ZooError(
            f"--reference {ref}: its classes {ref_card['classes']} differ from the model's {list(class_names)}"
        )
    if ref_res is None or not comparable(ref_res, res) or any(f not in ref_res["families"] for f in fams):
        log.info("scoring the reference %s on the same images (in memory; its folder is not changed)", ref)
        ref_res = evaluate_suite(
            load_predictor(ref, ref_card), part.images, part.labels, class_names, fams, severities, seed, max_images
        )
        ref_res["data"] = res["data"]
    return ref_res, str(ref_card["name"])


def plot_models(path: str | os.PathLike, results: dict[str, dict[str, Any]], title: str = "") -> Path:
    """One panel per family: accuracy against severity (0 = clean) for every model; in-family lines dashed."""
    from zoo import plots

    plt = plots.plt
    fams = list(dict.fromkeys(f for r in results.values() for f in r["families"]))
    cols = min(3, max(1, len(fams)))
    rows = (len(fams) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False, sharey=True)
    for k, fam in enumerate(fams):
        ax = axes[k // cols][k % cols]
        for i, (name, r) in enumerate(results.items()):
            f = r["families"].get(fam)
            if f is None:
                continue
            xs = [0, *r["severities"]]
            ys = [r["clean"]["accuracy"]] + [f["severities"][str(s)]["accuracy"] for s in r["severities"]]
            inside = fam in r.get("in_family", [])
            ax.plot(xs, ys, "--" if inside else "-", marker="o", ms=3, color=f"C{i}", label=name)
        ax.set_title(fam, fontsize=10)
        ax.set_xlabel("severity (0 = clean)")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    for k in range(len(fams), rows * cols):
        axes[k // cols][k % cols].axis("off")
    for r in axes:
        r[0].set_ylabel("accuracy")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=f"C{i}", marker="o", ms=3) for i in range(len(results))]
    fig.legend(
        handles,
        list(results),
        loc="upper left",
        bbox_to_anchor=(1.0, 0.95),
        fontsize=8,
        title="model (dashed: in-family)",
        title_fontsize=8,
    )
    fig.suptitle(title or "shift suite: accuracy per family and severity", fontsize=11)
    fig.tight_layout()
    return plots.save_figure(fig, path)
