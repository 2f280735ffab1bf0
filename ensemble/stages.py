"""``zoo run`` stages contributed by this package: ensembles, then distillation.

Factories follow ``zoo.pipeline_stages``: ``factory(ctx, Stage) -> list[Stage]``, where
``ctx`` is the pipeline context (``cfg``, lazily loaded ``dataset_at(size)``, and the run's
folders as a :class:`zoo.layout.RunLayout`). They read ``cfg.ensemble`` (enabled, methods, calibrate, tta) and
``cfg.distill`` (enabled, teacher, student, params, epochs, temperature, alpha); batch size,
learning rate, augmentation, patience and seed come from ``cfg.train`` / ``cfg.data``.

Folders: ``ctx.ensemble_dir(method)`` and ``ctx.student_dir()``. Both builders leave no
half-written folder under their final name (the ensemble is renamed into place; the student is
a ``zoo.train`` run whose card is written last and which resumes from its checkpoint), so the
pipeline's "card present = done" rule holds.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def stage_ensemble(ctx: Any, Stage: Any) -> list[Any]:
    """One stage per method in ``cfg.ensemble.methods`` over all configured members (needs ≥ 2).

    A member trained with ``snapshots`` > 1 brings its earlier cycles' snapshot members too.
    """
    e = ctx.cfg.ensemble
    runs = ctx.ensemble_member_dirs(ctx.cfg)
    methods = ctx.ensemble_methods(ctx.cfg)
    if e.enabled and not methods:
        log.info("ensemble stages skipped: the config has %d member(s) (snapshots included)", len(runs))
    stages = []
    for method in methods:
        out = ctx.ensemble_dir(method)

        def run(method: str = method, out: Path = out) -> None:
            from ensemble.build import build_ensemble

            cfg = e.to_stage(method, seed=ctx.cfg.data.seed)
            size = ctx.cfg.ensemble_input_size  # members may take different sizes; others resize in-graph
            build_ensemble(runs, out, data=lambda: ctx.dataset_at(size), config=cfg)

        label = f"ensemble {method}" + (" +calibration" if e.calibrate else "") + (" +TTA" if e.tta else "")
        stages.append(Stage(label, [out], run))
    return stages


def stage_distill(ctx: Any, Stage: Any) -> list[Any]:
    """Distil the ``cfg.distill.teacher`` ensemble into ``cfg.distill.student``."""
    d = ctx.cfg.distill
    if not d.enabled:
        return []
    if d.teacher not in ctx.ensemble_methods(ctx.cfg):
        from zoo.errors import ZooError

        raise ZooError(
            f"config: distill.teacher '{d.teacher}' must be one of the enabled ensemble.methods "
            f"{list(ctx.cfg.ensemble.methods)} (with at least 2 members)"
        )
    teacher, out = ctx.ensemble_dir(d.teacher), ctx.student_dir()

    def run() -> None:
        from ensemble.distill import distill

        cfg = d.to_stage(ctx.cfg.train)
        size = ctx.cfg.ensemble_input_size
        if out.exists() and not (out / "checkpoint" / "state.json").exists() and not (out / "card.json").exists():
            import shutil

            shutil.rmtree(out)  # an interrupted distillation that never reached its first checkpoint
        # zoo.train checkpoints every epoch: an interrupted distillation continues (--resume semantics).
        distill(teacher, lambda: ctx.dataset_at(size), out, cfg, resume=(out / "checkpoint" / "state.json").exists())

    return [Stage(f"distill {d.teacher} ensemble into {d.student}", [out], run, resumable=True)]
