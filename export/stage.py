"""``zoo run`` stages for the export package: one verified export folder per exported artifact.

Wired by adding :func:`export_stages` (with its config section) to ``zoo.pipeline_stages.FACTORIES``. Reads the
pipeline's ``[export]`` section (``enabled``, ``opset``, ``quantize`` — a list that may hold
``"int8"`` and ``"fp16"`` —, ``include`` — any of ``"members"``, ``"ensembles"``,
``"student"`` —, and optionally ``calibration_size`` and ``parity_images``). Each stage
writes ``ctx.export_dir(kind, name)`` (model.onnx, model.int8.onnx …, card.json) from the
pipeline's already-loaded dataset: parity on its val split, int8 calibration on its train split.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def export_sources(ctx) -> list[tuple[Path, Path]]:
    """``(export folder, source folder)`` for everything ``[export].include`` asks for, in pipeline order."""
    cfg = ctx.cfg
    include = set(cfg.export.include)
    out: list[tuple[Path, Path]] = []
    if "members" in include:
        out += [(ctx.export_dir("member", m.run_name), ctx.member_dir(m.run_name)) for m in cfg.members]
    if "ensembles" in include:
        out += [(ctx.export_dir("ensemble", method), ctx.ensemble_dir(method)) for method in ctx.ensemble_methods(cfg)]
    if "student" in include and cfg.distill.enabled:
        out.append((ctx.export_dir("student", "student"), ctx.student_dir()))
    return out


def export_stages(ctx, Stage: Callable[..., Any]) -> list[Any]:
    """One ``Stage`` per exported artifact (none when ``[export].enabled`` is false)."""
    ecfg = ctx.cfg.export
    if not ecfg.enabled:
        return []
    quantize = [str(q).lower() for q in ecfg.quantize]
    unknown = sorted(set(quantize) - {"int8", "fp16"})
    if unknown:
        from zoo.errors import ZooError

        raise ZooError(f"config: export.quantize {unknown} unknown; use 'int8' and/or 'fp16'")
    stages = []
    for out, source in export_sources(ctx):

        def run(source=source, out=out) -> None:
            from export.convert import export_model

            export_model(
                source,
                out,
                opset=ecfg.opset,
                dtype="fp16" if "fp16" in quantize else "fp32",
                quantize="int8" if "int8" in quantize else None,
                data=ctx.dataset_at,  # at the source's own input size (members may differ)
                calibration_size=int(getattr(ecfg, "calibration_size", 256)),
                limit=getattr(ecfg, "parity_images", 1000) or None,
                force=True,  # only reached when the folder is incomplete (the pipeline skips complete ones)
            )

        stages.append(Stage(f"export {out.name} to ONNX", [out], run))
    return stages
