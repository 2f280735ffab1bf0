"""``zoo run`` stage: benchmark the run's exports into ``<output>/bench/`` (bench.json, .md, .csv, pareto.png).

Wired by adding :func:`bench_stages` (with its config section) to ``zoo.pipeline_stages.FACTORIES`` after the export
stages. Reads the pipeline's ``[bench]`` section (``enabled``, ``batch_sizes``, ``iterations``,
``warmup``, ``threads``, ``providers``, ``engines``, ``max_seconds``) and scores every row on the
pipeline's val split (``eval_images`` caps it). The stage is complete when ``bench/bench.json``
exists (written last); it benches whatever exports ``[export]`` produced.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def bench_stages(ctx, Stage: Callable[..., Any]) -> list[Any]:
    bcfg = getattr(ctx.cfg, "bench", None)
    if bcfg is None or not bcfg.enabled:
        return []
    from export.stage import export_sources

    out = ctx.bench_dir()
    if ctx.cfg.export.enabled:
        models = [folder for folder, _ in export_sources(ctx)]
    else:
        models = [ctx.member_dir(m.run_name) for m in ctx.cfg.members]  # Keras + an in-memory fp32 conversion

    def run() -> None:
        from export.bench import bench

        bench(
            models,
            out,
            engines=bcfg.engines,
            providers=bcfg.providers,
            batch_sizes=bcfg.batch_sizes,
            threads=bcfg.threads,
            warmup=bcfg.warmup,
            iterations=bcfg.iterations,
            max_seconds=bcfg.max_seconds,
            data=ctx.dataset_at,  # each model scored on the data at its own input size
            split="val",
            limit=bcfg.eval_images or None,
            force=True,
            note=f"zoo run '{ctx.cfg.name}'",
        )

    return [Stage("benchmark exports (latency, throughput, accuracy)", [], run, done=(out / "bench.json").is_file)]
