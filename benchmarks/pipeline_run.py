"""What one finished ``zoo run`` measured, with evidence, against the issues' targets.

    python benchmarks/pipeline_run.py runs/pbc-cpu --name pbc_cpu [--log run1.err --log run2.err] [--load-log load.log]

Reads only the run folder (every number comes from the artifacts the pipeline wrote):

- **stage times** from ``stages.json`` and, for stages an earlier invocation of a resumed run
  finished, the ``done in Ns`` lines of its logs (``--log``);
- **clean accuracy** of every member, ensemble and the student on val and test, with a 95% bootstrap
  CI and the exact McNemar test against the best member on the same images
  (:mod:`ensemble.evidence`). Fitted ensembles are scored out-of-fold on val (``probs/val_oof.npy``):
  their in-sample val scores are not comparable;
- **where the errors are** on val: each model's most confused class pairs (:func:`zoo.confusions.confused_pairs`)
  and the classes of the images no member gets right, which bound any combiner;
- **robustness** from each artifact's shift suite: clean accuracy on the suite's images, the mean over
  in-family and out-of-family families, and every family's mean over severities (in-family marked);
- **cost**: parameters and, from the run's ``zoo bench`` results, ONNX latency at batch 1, throughput at
  the largest batch, and MACs;
- **targets** of issues #10 and #15, each said met or not met.

Writes ``benchmarks/results/<name>.{json,md}`` and ``<name>_tradeoff.png`` (clean vs mean shifted accuracy per
artifact) and copies the run's summary, shift-suite and Pareto
plots beside them as ``<name>_summary.png``, ``<name>_shift.png``, ``<name>_pareto.png``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))

from machine import describe, one_line

# Issue targets (#15: ensembles and students; #10: robustness).
ENSEMBLE_GAIN = 0.004
STUDENT_MAX_PARAMS = 500_000
STUDENT_TO_TEACHER = 0.005
STUDENT_OVER_ALONE = 0.01
OOF_GAP = 0.03
CLEAN_VAL = 0.985
WALL_SECONDS = 2 * 3600


# ----------------------------------------------------------------------------- reading the run
def stage_times(run: Path, logs: list[Path]) -> list[dict]:
    """``[{name, seconds}]``: the ``[i/n] NAME: done in Ns`` lines of the pipeline's logs, then ``stages.json``.

    A resumed run's ``stages.json`` holds the stages that ran since it existed; the logs (``--log``,
    in order) add the stages an earlier invocation finished.
    """
    done = re.compile(r"\[\d+/\d+\] (.+): done in (\d+)s")
    times: dict[str, float] = {}
    for log in logs:
        if log.is_file():
            for m in done.finditer(log.read_text(errors="replace")):
                times[m.group(1)] = float(m.group(2))
    path = run / "stages.json"
    if path.is_file():
        for r in json.loads(path.read_text())["stages"]:
            times[r["name"]] = float(r["seconds"])
    return [{"name": k, "seconds": v} for k, v in times.items()]


def untimed_stages(run: Path, stages: list[dict]) -> list[str]:
    """The run's stages (as its config lists them) with no recorded time: made elsewhere or not finished.

    Without them the sum of stage times is not the run's time, so the 2-hour target is not judged on it.
    """
    from zoo.pipeline import build, context_for_run

    timed = {s["name"] for s in stages}
    return [s.name for s in build(context_for_run(run).cfg)[1] if s.name not in timed]


def artifacts(run: Path) -> list[tuple[str, str, Path]]:
    """``(name, kind, folder)`` of every member, ensemble and the student, in pipeline order."""
    from zoo.pipeline import context_for_run

    ctx = context_for_run(run)
    folders = [ctx.member_dir(m.run_name) for m in ctx.cfg.members]
    folders += [ctx.ensemble_dir(m) for m in ctx.ensemble_methods(ctx.cfg)]
    if ctx.cfg.distill.enabled:
        folders.append(ctx.student_dir())
    return named_artifacts(folders, skip_incomplete=True)


def named_artifacts(folders: list[Path], skip_incomplete: bool = False) -> list[tuple[str, str, Path]]:
    """``(name, kind, folder)`` of each folder, named by its card; ``skip_incomplete``: leave out (and say) what has none."""
    from zoo.artifacts import read_card
    from zoo.errors import ZooError

    out = []
    for folder in folders:
        try:
            card = read_card(folder)
        except ZooError as exc:
            if not skip_incomplete:
                raise
            print(f"skipped {folder}: {exc}", file=sys.stderr)
            continue
        out.append((card["name"], card["kind"], folder))
    return out


def split_probs(folder: Path, kind: str, split: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Stored probabilities and labels; a fitted ensemble's val is its out-of-fold estimate."""
    from zoo.artifacts import load_npy, probs_files
    from zoo.errors import ZooError
    from zoo.runs import load_probs

    if kind == "ensemble":
        p_rel, y_rel = probs_files(split)
        if split == "val" and (folder / probs_files(split, "_oof")[0]).is_file():
            p_rel = probs_files(split, "_oof")[0]
        if not (folder / p_rel).is_file():
            return None
        return load_npy(folder / p_rel), load_npy(folder / y_rel)
    try:
        return load_probs(folder, split)
    except ZooError:
        return None


def clean_table(arts: list[tuple[str, str, Path]], splits=("val", "test")) -> dict[str, list[dict]]:
    """Per split: accuracy with CI, and McNemar vs the best member, for every artifact on the same images."""
    from ensemble.evidence import compare_rows

    out: dict[str, list[dict]] = {}
    for split in splits:
        got = {name: (kind, split_probs(folder, kind, split)) for name, kind, folder in arts}
        got = {n: (k, pv) for n, (k, pv) in got.items() if pv is not None}
        if not got:
            continue
        labels = next(iter(got.values()))[1][1]
        same = {n: (k, pv) for n, (k, pv) in got.items() if np.array_equal(pv[1], labels)}
        members = [n for n, (k, _) in same.items() if k == "member"]
        preds = {n: pv[0] for n, (_, pv) in same.items()}
        best = max(members, key=lambda n: float((preds[n].argmax(1) == labels).mean())) if members else None
        ev = compare_rows(preds, labels, reference=best)
        out[split] = [{"name": n, "kind": same[n][0], **ev[n]} for n in same]
    return out


def member_oracle(arts: list[tuple[str, str, Path]], split: str = "val", grid: int | None = None) -> dict | None:
    """What any combiner of these members could reach, and why.

    - ``accuracy``: the share of images at least one member gets right (the ceiling of any combiner);
    - ``best_grid_vote``: the best weighted vote over the simplex grid in steps of ``1/grid``, chosen on
      these very images (in-sample, so optimistic: an upper bound for the fitted vote on this split);
    - ``errors`` / ``both_wrong``: each member's errors and, per pair, the images both get wrong (the
      errors they share, which no vote of the two can fix).

    ``grid`` defaults to the steps of the clean-floor vote fit (:data:`ensemble.voting.FLOOR_GRID_STEPS`),
    whose simplex grid this searches.
    """
    import itertools

    from ensemble.voting import FLOOR_GRID_STEPS, simplex_grid

    grid = grid or FLOOR_GRID_STEPS
    named = [(name, split_probs(folder, kind, split)) for name, kind, folder in arts if kind == "member"]
    named = [(n, g) for n, g in named if g is not None]
    if len(named) < 2 or any(not np.array_equal(g[1], named[0][1][1]) for _, g in named):
        return None
    names, probs, labels = [n for n, _ in named], [g[0] for _, g in named], named[0][1][1]
    right = np.stack([p.argmax(1) == labels for p in probs])
    class_names = _class_names(arts)
    weights, stacked = simplex_grid(len(probs), grid), np.stack(probs)
    acc = np.concatenate(
        [  # chunks bound the (weights, images, classes) intermediate, as in the vote's own fit
            (np.einsum("wm,mnc->wnc", weights[i : i + 32], stacked).argmax(-1) == labels).mean(1)
            for i in range(0, len(weights), 32)
        ]
    )
    best = int(np.argmax(acc))  # the first of equals, in the grid's order
    return {
        "members": len(probs),
        "names": names,
        "n": int(right.shape[1]),
        "accuracy": float(right.any(0).mean()),
        "all_wrong": int((~right.any(0)).sum()),
        "all_wrong_classes": {  # the true classes of the images no member gets right
            class_names[c]: int(k) for c, k in zip(*np.unique(labels[~right.any(0)], return_counts=True))
        },
        "best_grid_vote": {"accuracy": float(acc[best]), "weights": weights[best].tolist(), "grid": grid},
        "errors": {n: int((~r).sum()) for n, r in zip(names, right)},
        "both_wrong": {
            f"{names[i]} & {names[j]}": int((~right[i] & ~right[j]).sum())
            for i, j in itertools.combinations(range(len(names)), 2)
        },
    }


def _class_names(arts: list[tuple[str, str, Path]]) -> list[str]:
    from zoo.artifacts import read_card

    return list(read_card(arts[0][2])["classes"])


def error_table(arts: list[tuple[str, str, Path]], split: str = "val") -> dict | None:
    """Where each model's errors are on ``split`` (``zoo.confusions.error_summary``): its confused class pairs,
    and the class that takes part in the most errors of all the models together with each model's count for it."""
    from zoo.confusions import confused_pairs, error_summary

    names = _class_names(arts)
    got = [(n, split_probs(folder, kind, split)) for n, kind, folder in arts]
    got = [(n, g) for n, g in got if g is not None]
    if not got:
        return None
    return {"split": split, **error_summary({n: confused_pairs(p, y, names) for n, (p, y) in got})}


def shift_rows(arts: list[tuple[str, str, Path]]) -> list[dict]:
    """Each artifact's shift-suite summary, then (``adapted``) the same suite with magnification adapted per
    set where the artifact has it (``[evaluate] shift_adapt_scale`` or ``zoo evaluate --shift-suite --adapt-scale``)."""
    from zoo.errors import ZooError
    from zoo.shift.report import ADAPTED_STEM, RESULTS, load_results

    rows = []
    for adapted in (False, True):
        for name, kind, folder in arts:
            try:
                r = load_results(folder, ADAPTED_STEM if adapted else RESULTS.stem)
            except ZooError:
                continue
            fams = {
                f: float(np.mean([s["accuracy"] for s in v["severities"].values()])) for f, v in r["families"].items()
            }
            rows.append(
                {
                    "name": name,
                    "kind": kind,
                    "adapted": adapted,
                    "split": r["data"]["split"],
                    "n": r["n"],
                    "clean": r["clean"]["accuracy"],
                    "mean_in_family": r["mean_in_family_accuracy"],
                    "mean_out_of_family": r["mean_out_of_family_accuracy"],
                    "in_family": r["in_family"],
                    "out_of_family": r["out_of_family"],
                    "families": fams,
                    "mce_out_of_family": r.get("mce_out_of_family"),
                }
            )
    return rows


def _shift_label(row: dict) -> str:
    return f"{row['name']}, magnification adapted per set" if row.get("adapted") else row["name"]


def cost_rows(run: Path, arts: list[tuple[str, str, Path]]) -> dict[str, dict]:
    """Parameters per artifact, plus ONNX latency/throughput/MACs from the run's bench results (int8 first)."""
    from zoo.artifacts import parameter_count, read_card
    from zoo.ensemble_file import read_ensemble

    out: dict[str, dict] = {}
    for name, kind, folder in arts:
        card = read_card(folder, verify=False)
        params = parameter_count(card)
        if kind == "ensemble":
            # the one ensemble.json reader: the members inference runs (zero-weight ones were left out)
            params = sum(parameter_count(c) or 0 for c in read_ensemble(folder).member_cards)
        out[name] = {"params": params}
    bench = run / "bench" / "bench.json"
    if not bench.is_file():
        return out
    rows = json.loads(bench.read_text())["rows"]
    for name, _kind, _ in arts:
        mine = [r for r in rows if r["model"] == name and r["status"] == "ok" and r.get("provider") == "cpu"]
        for variant in ("int8", "fp32"):
            v = [r for r in mine if r["variant"] == variant]
            if not v:
                continue
            b1 = [r for r in v if r["batch"] == 1]
            big = max(v, key=lambda r: r["batch"])
            out[name].update(
                {
                    "variant": variant,
                    "ms_batch1": b1[0]["p50_ms"] if b1 else None,
                    "throughput_batch": big["batch"],
                    "images_per_s": big["throughput_ips"],
                    "macs_per_image": big.get("macs_per_image"),
                    "onnx_accuracy": big.get("accuracy"),
                }
            )
            break
    return out


# ----------------------------------------------------------------------------- targets
def targets(
    clean: dict,
    shift: list[dict],
    cost: dict,
    wall: float | None,
    teachers: dict | None = None,
    run_names: set[str] | None = None,
    alone: dict[str, list[tuple[str, str]]] | None = None,
    untimed: list[str] | None = None,
    paired: dict[str, dict] | None = None,
) -> list[dict]:
    """The issues' targets on the run's own artifacts (``run_names``; ``--extra`` folders are not the run).

    ``alone``: student name -> ``[(extra folder's name, schedule note)]``, the same network trained on labels alone.
    ``untimed``: the run's stages without a time; with any, the run's time is not measured (``met`` None).
    ``paired``: :func:`versus_teacher`, the images only the student or only its teacher gets right.
    """
    out = []
    val = {r["name"]: r for r in clean.get("val", []) if run_names is None or r["name"] in run_names}
    every = {r["name"]: r for r in clean.get("val", [])}
    shift = [r for r in shift if run_names is None or r["name"] in run_names]
    members = [r for r in val.values() if r["kind"] == "member"]
    ensembles = [r for r in val.values() if r["kind"] == "ensemble"]
    students = [r for r in val.values() if r["kind"] == "student"]
    if members and ensembles:
        best_m = max(members, key=lambda r: r["accuracy"])
        best_e = max(ensembles, key=lambda r: r["accuracy"])
        gain = best_e["accuracy"] - best_m["accuracy"]
        out.append(
            {
                "target": f"best ensemble >= best member + {100 * ENSEMBLE_GAIN:.1f} points (val, out-of-fold)",
                "value": f"{best_e['name']} {100 * best_e['accuracy']:.2f}% vs {best_m['name']} "
                f"{100 * best_m['accuracy']:.2f}%: {100 * gain:+.2f} points, McNemar p = {best_e['mcnemar_p_value']:.3g}",
                "met": gain >= ENSEMBLE_GAIN,
            }
        )
    for s in students:
        # the ensemble that taught it (its card), else the best one
        taught = [r for r in ensembles if r["name"] == (teachers or {}).get(s["name"])]
        teacher_row = taught[0] if taught else (max(ensembles, key=lambda r: r["accuracy"]) if ensembles else None)
        params = cost.get(s["name"], {}).get("params")
        if params is not None:
            out.append(
                {
                    "target": f"{s['name']} <= {STUDENT_MAX_PARAMS:,} parameters",
                    "value": f"{params:,}",
                    "met": params <= STUDENT_MAX_PARAMS,
                }
            )
        if teacher_row:
            gap = teacher_row["accuracy"] - s["accuracy"]
            pair = (paired or {}).get(s["name"])
            evidence = (
                f"; {pair['student_only']} images only the student gets right, {pair['teacher_only']} only the "
                f"teacher, exact McNemar p = {pair['p_value']:.3g}"
                if pair and pair["teacher"] == teacher_row["name"]
                else ""
            )
            out.append(
                {
                    "target": f"{s['name']} within {100 * STUDENT_TO_TEACHER:.1f} points of its teacher (val)",
                    "value": f"{100 * s['accuracy']:.2f}% vs {teacher_row['name']} {100 * teacher_row['accuracy']:.2f}% "
                    f"(gap {100 * gap:.2f} points{evidence})",
                    "met": gap <= STUDENT_TO_TEACHER,
                }
            )
        for lone_name, schedule in (alone or {}).get(s["name"], []):
            lone = every.get(lone_name)
            if not lone:
                continue
            gain = s["accuracy"] - lone["accuracy"]
            out.append(
                {
                    "target": f"{s['name']} >= the same network trained alone + {100 * STUDENT_OVER_ALONE:.0f} point (val)",
                    "value": f"{100 * s['accuracy']:.2f}% vs {lone['name']} {100 * lone['accuracy']:.2f}% "
                    f"({100 * gain:+.2f} points{'; ' + schedule if schedule else ''})",
                    "met": gain >= STUDENT_OVER_ALONE,
                }
            )
    for r in shift:
        if r["kind"] in ("ensemble", "student") and r["mean_out_of_family"] is not None:
            gap = r["clean"] - r["mean_out_of_family"]
            out.append(
                {
                    "target": f"{_shift_label(r)}: mean out-of-family accuracy within {100 * OOF_GAP:.0f} points of clean",
                    "value": f"{100 * r['mean_out_of_family']:.1f}% vs clean {100 * r['clean']:.1f}% on "
                    f"{r['n']} {r['split']} images (gap {100 * gap:.1f} points; out-of-family: "
                    f"{', '.join(r['out_of_family'])})",
                    "met": gap <= OOF_GAP,
                }
            )
    for r in ensembles + students:
        out.append(
            {
                "target": f"{r['name']}: clean val accuracy >= {100 * CLEAN_VAL:.1f}%",
                "value": f"{100 * r['accuracy']:.2f}% (95% CI {100 * r['ci_low']:.2f}–{100 * r['ci_high']:.2f})",
                "met": r["accuracy"] >= CLEAN_VAL,
            }
        )
    if untimed:
        shown = ", ".join(untimed[:3]) + (f" and {len(untimed) - 3} more" if len(untimed) > 3 else "")
        out.append(
            {
                "target": "whole run <= 2 h on 2 cores",
                "value": f"not measured: {len(untimed)} of its stages have no time here ({shown})",
                "met": None,
            }
        )
    elif wall is not None:
        out.append(
            {
                "target": "whole run <= 2 h on 2 cores",
                "value": f"{wall / 60:.0f} min",
                "met": wall <= WALL_SECONDS,
            }
        )
    return out


def _trained_alone(
    run_arts: list[tuple[str, str, Path]], extra_arts: list[tuple[str, str, Path]]
) -> dict[str, list[tuple[str, str]]]:
    """Student name -> ``[(extra member name, schedule)]``: every extra folder with the student's network (family,
    parameters, input size) trained on labels, the one with the student's own schedule first, then by how far its
    schedule is from the student's. Each is a target row: a student is judged against every schedule scored."""
    from zoo.artifacts import read_card

    def network_and_epochs(folder: Path) -> tuple[tuple, int | None]:
        card = read_card(folder, verify=False)
        network = card.get("member"), json.dumps(card.get("params"), sort_keys=True), card["input"]["image_size"]
        return network, (card.get("training") or {}).get("config", {}).get("epochs")

    alone = [(n, *network_and_epochs(f)) for n, k, f in extra_arts if k == "member"]
    out = {}
    for name, kind, folder in run_arts:
        if kind == "student":
            mine, mine_epochs = network_and_epochs(folder)
            same = [(n, e) for n, net, e in alone if net == mine]
            if mine_epochs is not None:
                same.sort(key=lambda ne: (abs((ne[1] or 0) - mine_epochs), -(ne[1] or 0)))
            out[name] = [(n, f"alone {e} epochs, student {mine_epochs}" if e is not None else "") for n, e in same]
    return out


def versus_teacher(arts: list[tuple[str, str, Path]], teachers: dict[str, str], split: str = "val") -> dict[str, dict]:
    """Each student against its own teacher on the same images (a fitted teacher's val out-of-fold): the images
    only one of them gets right and the exact McNemar p-value, behind the "within 0.5 points" target."""
    from ensemble.evidence import mcnemar_exact

    where = {name: (kind, folder) for name, kind, folder in arts}
    out = {}
    for student, teacher in teachers.items():
        s, t = (
            split_probs(where[student][1], "student", split),
            split_probs(where[teacher][1], where[teacher][0], split),
        )
        if s is None or t is None or not np.array_equal(s[1], t[1]):
            continue
        r = mcnemar_exact(t[0].argmax(1) == t[1], s[0].argmax(1) == s[1])
        out[student] = {"teacher": teacher, "teacher_only": r["b_reference_only"], "student_only": r["c_other_only"]}
        out[student]["p_value"] = r["p_value"]
    return out


def combiners(arts: list[tuple[str, str, Path]]) -> dict[str, dict]:
    """What each ensemble fitted (``ensemble.json``): its method, members and, for a vote, the weights."""
    from zoo.ensemble_file import read_ensemble

    out = {}
    for name, kind, folder in arts:
        if kind == "ensemble":
            spec = read_ensemble(folder).spec
            out[name] = {"method": spec["method"], "members": [m["name"] for m in spec["members"]]}
            if spec.get("weights") is not None:
                out[name]["weights"] = [float(w) for w in spec["weights"]]
            if spec.get("dropped_members"):
                out[name]["dropped"] = [d["name"] for d in spec["dropped_members"]]
    return out


def _teachers(arts: list[tuple[str, str, Path]]) -> dict[str, str]:
    """Each student's teacher, by name: the artifact in ``arts`` whose folder its card records."""
    from zoo.artifacts import read_card

    where = {folder.resolve(): name for name, _, folder in arts}
    out = {}
    for name, kind, folder in arts:
        if kind == "student":
            t = read_card(folder, verify=False).get("distillation", {}).get("teacher", {})
            found = [where.get((folder / t[k]).resolve()) for k in ("path", "abs_path") if t.get(k)]
            if any(found):
                out[name] = next(f for f in found if f)
    return out


# ----------------------------------------------------------------------------- writing
def _pct(v) -> str:
    return "" if v is None else f"{100 * v:.2f}"


def markdown(res: dict) -> str:
    from ensemble.compare import error_lines

    extra = f" and {len(res['extra'])} folders beside it" if res.get("extra") else ""
    L = [f"# `zoo run` {res['config']}{extra}: what was measured", ""]
    L += [f"Machine: {res['machine']}. Commit {res['commit']}. {res['conditions']}", ""]
    if res["stages"]:
        L += ["## Stage times", "", "| stage | seconds |", "|---|---|"]
        L += [f"| {s['name']} | {s['seconds']:.0f} |" for s in res["stages"]]
        L += ["", f"Sum of stages: {res['stage_seconds'] / 60:.1f} min."]
        if res.get("untimed_stages"):
            L += [f"Stages with no time here (made elsewhere or not finished): {', '.join(res['untimed_stages'])}."]
        if res.get("wall_seconds"):
            L += [f"Wall time of the command: {res['wall_seconds'] / 60:.1f} min."]
        L.append("")
    for split, rows in res["clean"].items():
        ref = rows[0]["reference"] if rows else ""
        note = " (fitted ensembles: out-of-fold)" if split == "val" else ""
        L += [f"## Clean accuracy, {split}{note}", ""]
        L += [
            f"95% bootstrap CI; paired difference and exact McNemar against the best member (`{ref}`) on the same "
            f"{rows[0]['n']} images.",
            "",
        ]
        L += [
            "| model | kind | accuracy | 95% CI | vs best member | McNemar p | params | MFLOPs | ONNX ms (batch 1) "
            "| ONNX img/s (largest batch) |"
        ]
        L += ["|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            c = res["cost"].get(r["name"], {})
            ms = f"{c['ms_batch1']:.2f} ({c['variant']})" if c.get("ms_batch1") is not None else ""
            ips = f"{c['images_per_s']:.0f} (batch {c['throughput_batch']})" if c.get("images_per_s") else ""
            params = f"{c['params']:,}" if c.get("params") else ""
            # FLOPs = 2 x the multiply-adds zoo bench counts in the ONNX graph (conv, matmul, gemm), per image
            flops = f"{2 * c['macs_per_image'] / 1e6:.1f}" if c.get("macs_per_image") else ""
            L.append(
                f"| {r['name']} | {r['kind']} | {_pct(r['accuracy'])} | {_pct(r['ci_low'])}–{_pct(r['ci_high'])} | "
                f"{100 * r['diff_vs_reference']:+.2f} | {r['mcnemar_p_value']:.3g} | {params} | {flops} | {ms} | {ips} |"
            )
        L.append("")
        weights = [
            f"`{n}` " + ", ".join(f"{m} {w:g}" for m, w in zip(fit["members"], fit["weights"]))
            for n, fit in res.get("combiners", {}).items()
            if split == "val" and fit.get("weights") is not None
        ]
        if weights:
            L += ["Fitted vote weights (`ensemble.json`): " + "; ".join(weights) + ".", ""]
        o = res.get("oracle") if split == "val" else None
        if o:
            L += [
                f"Ceiling for any combiner of these {o['members']} members: {_pct(o['accuracy'])}% of the {o['n']} "
                f"images have at least one member right ({o['all_wrong']} have none"
                + (
                    ": " + ", ".join(f"{k} {v}" for k, v in o["all_wrong_classes"].items()) + ")."
                    if o.get("all_wrong_classes")
                    else ")."
                ),
                "",
            ]
            if o.get("best_grid_vote"):
                b = o["best_grid_vote"]
                weights = " / ".join(f"{w:g}" for w in b["weights"])
                shared = "; ".join(f"{k} {v}" for k, v in o["both_wrong"].items())
                errors = ", ".join(f"{k} {v}" for k, v in o["errors"].items())
                L += [
                    f"Best weighted vote on the grid of steps 1/{b['grid']}, chosen on these same images (in-sample, an "
                    f"upper bound for a fitted vote): {_pct(b['accuracy'])}% (weights {weights} to "
                    f"{', '.join(o['names'])}). Errors per member: {errors}; wrong on both, per pair: {shared}.",
                    "",
                ]
    e = res.get("errors")
    if e:
        L += error_lines(e, f"## Where the errors are ({e['split']})")
    if res["shift"]:
        fams = list(res["shift"][0]["families"])
        L += ["## Robustness: shift suite (6 families x 5 severities)", ""]
        L += [
            "Accuracy per family, mean over its five severities; `*` marks a family the model's training "
            "augmentation covers (in-family), the others are out-of-family and only they support a robustness claim."
            + (
                " Rows marked *magnification adapted per set*: the same suite with each acquisition's magnification "
                "read and undone first (`zoo.magnification`, label-free, no training: geometry stays out-of-family)."
                if any(r.get("adapted") for r in res["shift"])
                else ""
            ),
            "",
        ]
        L += ["| model | split (n) | clean | mean in-family | mean out-of-family | " + " | ".join(fams) + " |"]
        L += ["|---|---|---|---|---|" + "---|" * len(fams)]
        for r in res["shift"]:
            cells = [f"{_pct(r['families'][f])}{'*' if f in r['in_family'] else ''}" for f in fams]
            L.append(
                f"| {_shift_label(r)} | {r['split']} ({r['n']}) | {_pct(r['clean'])} | {_pct(r['mean_in_family'])} | "
                f"{_pct(r['mean_out_of_family'])} | " + " | ".join(cells) + " |"
            )
        L.append("")
    if res.get("notes") or res.get("extra"):
        L += ["## Notes", ""] + [f"- {n}" for n in res["notes"]]
        L += [f"- Scored beside the run (`--extra`): `{f}`" for f in res.get("extra", [])] + [""]
    L += ["## Targets", "", "| target | measured | met |", "|---|---|---|"]
    verdict = {True: "yes", False: "**no**", None: "not measured"}
    L += [f"| {t['target']} | {t['value']} | {verdict[t['met']]} |" for t in res["targets"]]
    return "\n".join(L) + "\n"


def tradeoff_plot(shift: list[dict], path: Path) -> Path | None:
    """Clean accuracy against the mean over all shift families, one labelled point per artifact.

    Hollow markers: the mean includes families the model trained on (in-family), so the point
    shows what its recipe holds, not an out-of-family robustness claim.
    """
    shift = [r for r in shift if not r.get("adapted")]  # one point per artifact, as it is
    if not shift:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"member": "tab:blue", "ensemble": "tab:orange", "student": "tab:green"}
    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    for r in shift:
        x, y = 100 * r["clean"], 100 * float(np.mean(list(r["families"].values())))
        c = colours.get(r["kind"], "grey")
        face = "none" if r["in_family"] else c
        ax.scatter([x], [y], s=60, edgecolors=c, facecolors=face, linewidths=1.8)
        ax.annotate(r["name"], (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    for kind, c in colours.items():
        ax.scatter([], [], color=c, label=kind)
    ax.scatter([], [], facecolors="none", edgecolors="grey", label="trained on some families (hollow)")
    ax.set_xlabel("clean accuracy on the suite's images (%)")
    ax.set_ylabel("mean accuracy over the six shift families (%)")
    ax.set_title("Clean vs shifted: the trade-off per model")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def load_conditions(path: Path | None) -> str:
    """One sentence on the machine's load during the run, from ``HH:MM:SS l1 l5 l15`` lines."""
    if path is None or not path.is_file():
        return ""
    loads = [float(line.split()[1]) for line in path.read_text().splitlines() if len(line.split()) >= 2]
    if not loads:
        return ""
    return (
        f"1-min load average during the run (sampled each minute, {len(loads)} samples): median "
        f"{np.median(loads):.1f}, max {max(loads):.1f} on 2 cores."
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="a finished `zoo run` output folder")
    ap.add_argument("--name", required=True, help="results file stem, e.g. pbc_cpu")
    ap.add_argument(
        "--log", type=Path, action="append", default=[], help="a log of the pipeline (repeatable, in order)"
    )
    ap.add_argument("--load-log", type=Path, help="load average samples taken during the run")
    ap.add_argument("--wall", type=float, help="wall seconds of the whole command, when measured outside")
    ap.add_argument("--commit", default=None, help="commit the run was made with (default: this checkout's HEAD)")
    ap.add_argument(
        "--extra",
        type=Path,
        action="append",
        default=[],
        help="another member, ensemble or student folder to score beside the run's (an experiment; repeatable)",
    )
    ap.add_argument("--note", action="append", default=[], help="free text recorded with the results (repeatable)")
    args = ap.parse_args(argv)

    run_arts = artifacts(args.run)
    extra_arts = named_artifacts(args.extra)
    arts = run_arts + extra_arts
    stages = stage_times(args.run, args.log)
    clean = clean_table(arts)
    shift = shift_rows(arts)
    cost = cost_rows(args.run, arts)
    commit = (
        args.commit
        or subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
    )
    untimed = [] if args.wall else untimed_stages(args.run, stages)
    wall = args.wall or (sum(s["seconds"] for s in stages) if stages else None)
    teachers = _teachers(arts)
    res = {
        "config": json.loads((args.run / "config.json").read_text())["name"],
        "machine": one_line(describe()),
        "commit": commit,
        "conditions": load_conditions(args.load_log),
        "stages": stages,
        "stage_seconds": sum(s["seconds"] for s in stages),
        "wall_seconds": args.wall,
        "untimed_stages": untimed,
        "clean": clean,
        "oracle": member_oracle(run_arts),  # the run's members: what its combiners could reach
        "combiners": combiners(arts),
        "errors": error_table(arts),
        "shift": shift,
        "cost": cost,
        "targets": targets(
            clean,
            shift,
            cost,
            wall,
            teachers,
            {n for n, _, _ in run_arts},
            _trained_alone(run_arts, extra_arts),
            untimed,
            versus_teacher(arts, teachers),
        ),
        "notes": args.note,
        "extra": [str(f) for f in args.extra],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(res, indent=2, default=float) + "\n")
    (RESULTS / f"{args.name}.md").write_text(markdown(res))
    tradeoff_plot(shift, RESULTS / f"{args.name}_tradeoff.png")
    # The run's own plots: they show the run's artifacts only, so not copied beside an experiment's results.
    for src, suffix in (
        ()
        if args.extra
        else (
            ("report/summary.png", "summary"),
            ("report/shift_suite.png", "shift"),
            ("bench/pareto.png", "pareto"),
        )
    ):
        if (args.run / src).is_file():
            shutil.copyfile(args.run / src, RESULTS / f"{args.name}_{suffix}.png")
    print(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
