"""``zoo run``: the whole pipeline from one TOML config (default: the offline quickstart)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "run",
        help="run the pipeline (data → members → evaluate → ensemble → distill → export)",
        description="Run every incomplete stage of a TOML pipeline; complete stages are skipped, an "
        "interrupted training continues from its last epoch. Without --config: the built-in "
        "quickstart on synthetic data (offline, a few minutes on 2 CPU cores).",
    )
    p.add_argument("--config", help="pipeline TOML file, or a built-in name (quickstart, pbc-cpu, pbc-gpu)")
    p.add_argument("--data", help="override [data].source, e.g. ../shared/data/pbc128 or bloodmnist:64")
    p.add_argument("--output", help="override the output folder")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from zoo import config, pipeline

    cfg = config.load(args.config)
    if args.data:
        cfg.data.source = args.data
    if args.output:
        cfg.output = args.output
    report = pipeline.run(cfg)
    print(Path(report).read_text())
    print(f"artifacts: {cfg.output}/  (members/, ensembles/, report/)")
    print(f"summary:   {report}")
    print(f"report:    {Path(report).parent / 'index.html'}  (open it in a browser)")
    return 0
