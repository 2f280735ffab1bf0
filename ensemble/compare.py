"""Members vs voting vs stacking on the same rows, before and after calibration.

Every row of the comparison is scored honestly:

- on the fit split (val): members as stored (nothing fitted); anything fitted on val
  (temperature, vote weights, meta-learner) by its out-of-fold predictions (:mod:`ensemble.cv`);
- on other splits (test): each variant refitted on all val rows, applied to the held-out split.

A robust fit (``zoo ensemble --fit-shift``) fits on the clean val rows plus shifted copies of them. The
fit split's rows then score the clean images only, and the copies get rows of their own (split
``<fit split>_shifted``), without confidence interval or McNemar test: ten copies of one image are not ten
independent images, and pooled with the clean rows they would pass for a val split ten times its size.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ensemble.combine import combine
from ensemble.cv import Fold, cross_fit
from ensemble.metrics import scores
from ensemble.stacking import fit_stack
from ensemble.voting import fit_vote
from zoo.artifacts import write_json, write_text
from zoo.confusions import confused_pairs, error_summary, top_pairs
from zoo.errors import ZooError

log = logging.getLogger(__name__)

# The split name of a robust fit's shifted copies of the fit split: ``<fit split>`` + SHIFTED.
SHIFTED = "_shifted"


@dataclass
class Variant:
    name: str
    group: str  # member | vote | stack
    calibrated: bool
    fit: Callable[[np.ndarray, np.ndarray], Mapping[str, Any]]
    fitted: bool  # does fit() learn anything from the rows?


def make_variants(
    member_names: Sequence[str],
    weights: Sequence[float] | None = None,
    learner: str = "logistic",
    learner_params: dict[str, Any] | None = None,
    features: str = "log",
    folds: int = 5,
    seed: int = 0,
    members: bool = True,
    clean_floor: float | None = None,
    copies: int = 1,
    select: bool = False,
    built: str | None = None,
) -> list[Variant]:
    """Each member, equal vote, fitted (or given) vote, stacking — each without and with temperature.

    ``built``: the method a build fits (``"vote"`` or ``"stack"``). The clean floor and the regularisation
    selection shape that method's variant only; the other method's row is fitted plainly on the same rows,
    a comparison rather than a second build (a floored stack searches 18 candidates with inner folds: in the
    pbc-cpu vote's build that row alone took two minutes). ``None``: both methods get them.
    """
    m = len(member_names)
    vote_floor = clean_floor if built in (None, "vote") else None
    stack_floor, stack_select = (clean_floor, select) if built in (None, "stack") else (None, False)
    out: list[Variant] = []
    for cal in (False, True):
        sfx = " +T" if cal else ""
        if members:
            for i, name in enumerate(member_names):
                onehot = np.eye(m)[i]
                out.append(
                    Variant(
                        f"{name}{sfx}",
                        "member",
                        cal,
                        (lambda p, y, w=onehot, c=cal: fit_vote(p, y, w, calibrate=c)),
                        cal,
                    )
                )
        if m > 1:
            out.append(
                Variant(
                    f"vote equal{sfx}", "vote", cal, (lambda p, y, c=cal: fit_vote(p, y, np.ones(m), calibrate=c)), cal
                )
            )
            label = "vote given" if weights is not None else "vote fitted"
            out.append(
                Variant(
                    f"{label}{sfx}",
                    "vote",
                    cal,
                    (lambda p, y, c=cal: fit_vote(p, y, weights, calibrate=c, clean_floor=vote_floor, copies=copies)),
                    cal or weights is None,
                )
            )
            out.append(
                Variant(
                    f"stack {learner}/{features}{sfx}",
                    "stack",
                    cal,
                    (
                        lambda p, y, c=cal: fit_stack(
                            p,
                            y,
                            learner,
                            learner_params,
                            features,
                            c,
                            folds,
                            seed,
                            select=stack_select,
                            copies=copies,
                            clean_floor=stack_floor,
                        )
                    ),
                    True,
                )
            )
    return out


def evaluate(
    variants: Sequence[Variant],
    fit_probs: np.ndarray,
    fit_labels: np.ndarray,
    folds: list[Fold],
    other: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    fit_split: str = "val",
    copies: int = 1,
    class_names: Sequence[str] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Score every variant; returns (table rows, {variant: {"spec", "oof", split: probs}}).

    ``copies`` > 1: the fit rows are the clean block then ``copies - 1`` shifted copies of it
    (:func:`ensemble.robust.extend_fit_rows`); ``oof`` keeps every row, the table scores the blocks apart.
    ``class_names``: also record where each uncalibrated row's errors are (:func:`add_errors`).
    """
    rows, outputs = [], {}
    k = len(folds)
    n = len(fit_labels) // copies
    if copies < 1 or n * copies != len(fit_labels):
        raise ZooError(f"{len(fit_labels)} fit rows are not {copies} equal blocks")
    shifted_split = f"{fit_split}{SHIFTED}"
    for v in variants:
        log.info("scoring %s", v.name)
        spec = v.fit(fit_probs, fit_labels)  # refit on all fit rows: the artifact for other splits
        if v.group == "member" and not v.calibrated:
            i = int(np.argmax(spec["weights"]))
            oof = fit_probs[i]  # the member's own probabilities, untouched
        else:
            oof = cross_fit(v.fit, fit_probs, fit_labels, folds) if v.fitted else combine(spec, fit_probs)
        out = {"spec": spec, "oof": oof}
        scored = f"out-of-fold ({k}-fold)" if v.fitted else "as is"
        head = {"model": v.name, "group": v.group, "calibrated": v.calibrated}
        rows.append({"split": fit_split, **head, "scored": scored, **scores(oof[:n], fit_labels[:n])})
        if copies > 1:
            rows.append(
                {
                    "split": shifted_split,
                    **head,
                    "scored": f"{scored}, {copies - 1} shifted copies of each image",
                    **scores(oof[n:], fit_labels[n:]),
                }
            )
        for split, (p, y) in (other or {}).items():
            if v.group == "member" and not v.calibrated:
                probs = p[int(np.argmax(spec["weights"]))]
            else:
                probs = combine(spec, p)
            out[split] = probs
            rows.append(
                {
                    "split": split,
                    "model": v.name,
                    "group": v.group,
                    "calibrated": v.calibrated,
                    "scored": f"fitted on {fit_split}, held out" if v.fitted else "as is",
                    **scores(probs, y),
                }
            )
        outputs[v.name] = out
    independent = {fit_split: fit_labels[:n], **{s: y for s, (_, y) in (other or {}).items()}}
    add_evidence(rows, outputs, independent, fit_split)
    if class_names is not None:
        add_errors(rows, outputs, independent, class_names, fit_split)
    return rows, outputs


def add_evidence(
    rows: list[dict[str, Any]],
    outputs: Mapping[str, Mapping[str, Any]],
    labels: Mapping[str, np.ndarray],
    fit_split: str = "val",
) -> None:
    """Per split, add a 95% bootstrap CI and the exact McNemar test vs the best plain member to every row.

    Same images for every row (out-of-fold predictions on the fit split, its first ``len(labels[fit_split])``
    rows: the clean block of a robust fit); see :mod:`ensemble.evidence`.
    """
    from ensemble.evidence import compare_rows

    for split, y in labels.items():
        sub = [r for r in rows if r["split"] == split]
        preds = {r["model"]: _split_probs(outputs[r["model"]], split, fit_split, len(y)) for r in sub}
        plain = [r for r in sub if r["group"] == "member" and not r["calibrated"]]
        ref = max(plain, key=lambda r: r["accuracy"])["model"] if plain else None
        ev = compare_rows(preds, y, reference=ref)
        for r in sub:
            e = ev[r["model"]]
            r.update(
                {
                    "ci_low": e["ci_low"],
                    "ci_high": e["ci_high"],
                    "reference": e["reference"],
                    "diff_vs_reference": e["diff_vs_reference"],
                    "mcnemar_p": e["mcnemar_p_value"],
                    "mcnemar_b": e["mcnemar_b_reference_only"],
                    "mcnemar_c": e["mcnemar_c_other_only"],
                }
            )


def _split_probs(out: Mapping[str, Any], split: str, fit_split: str, n: int) -> np.ndarray:
    """A variant's probabilities on ``split``: out-of-fold on the fit split (its clean block of ``n`` rows)."""
    return out["oof"][:n] if split == fit_split else out[split]


def add_errors(
    rows: list[dict[str, Any]],
    outputs: Mapping[str, Mapping[str, Any]],
    labels: Mapping[str, np.ndarray],
    class_names: Sequence[str],
    fit_split: str = "val",
) -> None:
    """Per split, add ``confused`` (:func:`zoo.confusions.confused_pairs`) to every uncalibrated row.

    Calibrated rows are left out: a temperature never changes which class is most probable, so their errors
    are their uncalibrated twin's.
    """
    for split, y in labels.items():
        for r in rows:
            if r["split"] == split and not r["calibrated"]:
                probs = _split_probs(outputs[r["model"]], split, fit_split, len(y))
                r["confused"] = confused_pairs(probs, y, list(class_names))


def error_lines(summary: Mapping[str, Any], heading: str, pairs: int = 3) -> list[str]:
    """Markdown for :func:`zoo.confusions.error_summary`: one row per model, its errors and its most confused pairs."""
    c = summary["class"]
    lines = [
        heading,
        "",
        "Each model's errors by the pair of classes it confuses (true → predicted, both directions), most "
        f"frequent first. `{c}` takes part in {100 * summary['class_share']:.0f}% of all these models' errors "
        "together (as the true or the predicted class).",
        "",
        f"| model | errors | with `{c}` | most confused pairs: a ↔ b count (a → b / b → a) |",
        "|---|---|---|---|",
    ]
    for name, r in summary["rows"].items():
        lines.append(f"| {name} | {r['errors']} | {r['with_class']} | {top_pairs(r, pairs)} |")
    return lines + [""]


def markdown(rows: Sequence[Mapping[str, Any]], title: str = "Members vs ensembles") -> str:
    lines = [f"# {title}", ""]
    for split in dict.fromkeys(r["split"] for r in rows):
        sub = [r for r in rows if r["split"] == split]
        best = max(r["accuracy"] for r in sub)
        what = f"{sub[0]['n']} images" if not split.endswith(SHIFTED) else f"{sub[0]['n']} shifted images"
        lines += [
            f"## split `{split}` ({what})",
            "",
            "| model | calibrated | scored | accuracy | 95% CI | McNemar p vs best member (b/c) | macro F1 | NLL | ECE |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in sub:
            acc = f"{100 * r['accuracy']:.2f}%"
            acc = f"**{acc}**" if r["accuracy"] == best else acc
            ci = f"{100 * r['ci_low']:.2f}–{100 * r['ci_high']:.2f}" if "ci_low" in r else "–"
            mc = (
                "reference"
                if r.get("reference") == r["model"]
                else f"{r['mcnemar_p']:.3g} ({r['mcnemar_b']}/{r['mcnemar_c']})"
                if "mcnemar_p" in r
                else "–"
            )
            lines.append(
                f"| {r['model']} | {'yes' if r['calibrated'] else 'no'} | {r['scored']} | {acc} | {ci} | {mc} | "
                f"{100 * r['macro_f1']:.2f}% | {r['nll']:.4f} | {100 * r['ece']:.2f}% |"
            )
        lines.append("")
        confused = {r["model"]: r["confused"] for r in sub if "confused" in r}
        if confused:
            lines += error_lines(error_summary(confused), f"### Where the errors are (`{split}`)")
    lines.append(
        "95% CI: percentile bootstrap over images (2000 resamples, seed 0). McNemar: exact two-sided "
        "binomial test on the images only one of (best plain member, row) gets right; b = only the member, "
        "c = only the row. "
    )
    lines.append(
        "Fitted rows on the fit split are scored out-of-fold: each row is predicted by a combiner "
        "(weights, meta-learner, temperature) fitted without it. On other splits each combiner is "
        "refitted on all fit-split rows. A `_shifted` split holds the shifted copies of the fit split's images "
        "that a robust fit also fits on (out-of-fold like the clean rows; in-family for the combiner); copies of "
        "one image are not independent, so those rows get no CI or McNemar test."
    )
    return "\n".join(lines) + "\n"


def plot(rows: Sequence[Mapping[str, Any]], split: str, path: str | Path) -> Path:
    """Accuracy and ECE bars per model on one split."""
    from zoo.plots import plt, save_figure  # headless Agg backend

    sub = [r for r in rows if r["split"] == split]
    names = [r["model"] for r in sub]
    colours = {"member": "#8C8C8C", "vote": "#4C72B0", "stack": "#55A868"}
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.35 * len(sub) + 1.6), sharey=True)
    y = np.arange(len(sub))
    for ax, key, label in ((axes[0], "accuracy", "accuracy (%)"), (axes[1], "ece", "ECE (%)")):
        vals = [100 * r[key] for r in sub]
        bars = ax.barh(y, vals, color=[colours[r["group"]] for r in sub], edgecolor="black", linewidth=0.3)
        for bar, r in zip(bars, sub):
            if r["calibrated"]:
                bar.set_hatch("//")
        for yi, v in zip(y, vals):
            ax.text(v, yi, f" {v:.2f}", va="center", fontsize=7)
        ax.set_xlabel(label)
        if key == "accuracy":
            lo = min(vals)
            ax.set_xlim(max(0.0, lo - 5), 100)
    axes[0].set_yticks(y, names, fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle(f"members vs ensembles on '{split}' (grey member, blue vote, green stack; hatched: +T)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def write(
    rows: Sequence[Mapping[str, Any]], folder: str | Path, stem: str = "comparison", title: str = "Members vs ensembles"
) -> list[Path]:
    """``<stem>.md``, ``<stem>.json`` and one ``<stem>_<split>.png`` per split into ``folder``."""
    folder = Path(folder)
    paths = [write_text(folder / f"{stem}.md", markdown(rows, title)), write_json(folder / f"{stem}.json", list(rows))]
    for split in dict.fromkeys(r["split"] for r in rows):
        paths.append(plot(rows, split, folder / f"{stem}_{split}.png"))
    return paths
