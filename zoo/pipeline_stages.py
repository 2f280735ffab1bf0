"""Stage factories the other packages contribute to ``zoo run`` (ensemble, distill, shift suite, export, bench).

Each factory takes ``(ctx, Stage)`` and returns a list of stages; they run in this order
after training and evaluation (the benchmark last: it reads the exports). Imports stay inside
the factories' packages, so ``zoo`` itself never imports ONNX code.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from ensemble.stages import stage_distill, stage_ensemble
from export.bench.stage import bench_stages
from export.stage import export_stages


def _shift_stages(ctx, Stage, folders: list[Path]) -> list:
    """``[evaluate] shift_suite``: one stage per artifact folder, CE normalised to the reference member.

    Each artifact is scored right after it is built (members before the ensembles, ensembles before
    distillation, everything before export), so the report and later stages find its results in
    place. Adding them changes its card hash but not its identity (``zoo.artifacts.card_identity``),
    which is what ensembles, students and exports pin.
    """
    e = ctx.cfg.evaluate
    if not e.shift_suite:
        return []
    reference = ctx.member_dir(e.shift_reference or ctx.cfg.members[0].run_name)
    stages = []
    for folder in folders:

        def run(folder: Path = folder) -> None:
            from zoo.artifacts import read_card
            from zoo.shift.report import evaluate_artifact

            # Each artifact on the data at its own input size (members, ensembles and students may differ);
            # the same rows and subsample, so CE normalisation compares like with like.
            ds = ctx.dataset_at(int(read_card(folder)["input"]["image_size"]))
            split = e.shift_split if e.shift_split in ds.splits and len(ds.splits[e.shift_split]) else "val"
            for adapt_scale in (False, True) if e.shift_adapt_scale else (False,):
                evaluate_artifact(
                    folder,
                    split=split,
                    families=e.shift_families or None,
                    seed=e.shift_seed,
                    max_images=e.shift_max_images or None,
                    reference=reference,
                    dataset=ds,
                    adapt_scale=adapt_scale,
                )

        done = partial(_suite_done, folder, e)
        # named from the output folder down (`student`, `members/x`), so a renamed output keeps its stage names
        where = folder.relative_to(ctx.root).as_posix() if folder.is_relative_to(ctx.root) else folder.name
        stages.append(Stage(f"shift suite on {where}", [], run, done=done))
    return stages


def shift_suite_members(ctx, Stage) -> list:
    e = ctx.cfg.evaluate
    reference = ctx.member_dir(e.shift_reference or ctx.cfg.members[0].run_name)
    members = [ctx.member_dir(m.run_name) for m in ctx.cfg.members]
    return _shift_stages(ctx, Stage, [reference] + [m for m in members if m != reference])  # the others divide by it


def shift_suite_ensembles(ctx, Stage) -> list:
    return _shift_stages(ctx, Stage, [ctx.ensemble_dir(m) for m in ctx.ensemble_methods(ctx.cfg)])


def shift_suite_student(ctx, Stage) -> list:
    return _shift_stages(ctx, Stage, [ctx.student_dir()]) if ctx.cfg.distill.enabled else []


def _suite_done(folder: Path, e) -> bool:
    """Results exist, the card lists them, and they were made with the configured settings."""
    import json

    from zoo.artifacts import read_card
    from zoo.errors import ZooError
    from zoo.shift import resolve_families
    from zoo.shift.report import ADAPTED_STEM, RESULTS, results_file

    stems = [RESULTS.stem] + ([ADAPTED_STEM] if e.shift_adapt_scale else [])
    try:
        card = read_card(folder, verify=False)
        results = [json.loads((folder / results_file(stem)).read_text(encoding="utf-8")) for stem in stems]
    except (ZooError, OSError, ValueError):
        return False
    return all(
        results_file(stem).as_posix() in card.get("files", {})
        and res.get("seed") == e.shift_seed
        and res.get("max_images") == (e.shift_max_images or None)
        and list(res.get("families", {})) == resolve_families(e.shift_families or None)
        for stem, res in zip(stems, results, strict=True)
    )


# (factory, the config section its stages add to the ones before): a stage depends on data, train,
# members, evaluate and every section up to its own, so `zoo run` can tell which finished stages a
# changed config would leave stale (zoo.pipeline.stale_stages).
FACTORIES: list = [
    (shift_suite_members, "evaluate"),
    (stage_ensemble, "ensemble"),
    (shift_suite_ensembles, "ensemble"),
    (stage_distill, "distill"),
    (shift_suite_student, "distill"),
    (export_stages, "export"),
    (bench_stages, "bench"),
]
