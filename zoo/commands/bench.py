"""``zoo bench MODEL…``: latency, throughput, memory, MACs and accuracy per engine, provider, variant and batch size.

A thin wrapper over :func:`export.bench.bench` (imported when the command runs, so the CLI
starts without ONNX Runtime or TensorFlow).
"""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark exports, runs and ensembles: latency, throughput, memory, MACs and accuracy side by side",
        description="Time every MODEL (export folder, run or ensemble folder, or .onnx file) with ONNX Runtime (each "
        "provider and variant asked for; those this machine lacks are reported as skipped rows) and with "
        "Keras (predict and a direct call) when the run/ensemble is reachable. Writes OUT/bench.json, "
        "bench.md, bench.csv and pareto.png (accuracy vs latency and throughput), with the machine and its load.",
    )
    p.add_argument("models", nargs="+", metavar="MODEL", help="export folder, run/ensemble folder or .onnx file")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for bench.{json,md,csv} and pareto.png")
    p.add_argument("--engine", default="ort,keras", help="comma list of ort, keras (default both)")
    p.add_argument(
        "--provider",
        default="cpu,cuda,tensorrt",
        help="comma list of ORT providers cpu, cuda, tensorrt (default all; missing ones become skipped rows)",
    )
    p.add_argument("--variant", help="comma list of fp32, fp16, int8 (default: fp32,int8 on cpu; fp32,fp16 on GPUs)")
    p.add_argument("--batch-sizes", default="1,128", help="comma list (default 1,128)")
    p.add_argument(
        "--threads", type=int, default=0, help="intra-op threads for ORT and TensorFlow (0 = library default)"
    )
    p.add_argument("--warmup", type=int, default=3, help="untimed runs per row (default 3)")
    p.add_argument("--iterations", type=int, default=30, help="timed runs per row at most (default 30)")
    p.add_argument(
        "--max-seconds", type=float, default=10.0, help="stop timing a row after this long (at least 3 runs)"
    )
    p.add_argument(
        "--data", metavar="SRC", help="score every row on this data source's --split (accuracy, F1, NLL, ECE)"
    )
    p.add_argument("--split", default="val", help="split of --data (default val)")
    p.add_argument("--limit", type=int, default=0, metavar="N", help="at most N images of the split (0 = all)")
    p.add_argument(
        "--opt-level",
        choices=("disable", "basic", "extended", "all"),
        default="all",
        help="ONNX Runtime graph optimisation level (default all)",
    )
    p.add_argument(
        "--profile", action="store_true", help="also write ONNX Runtime profiles (JSON traces) to OUT/profiles/"
    )
    p.add_argument("--note", default="", help="free text recorded with the results (e.g. what else ran)")
    p.add_argument("--force", action="store_true", help="replace an earlier `zoo bench` output in OUT")
    p.set_defaults(func=run)


def run(args) -> int:
    from export.bench import bench

    out = bench(
        args.models,
        args.out,
        engines=args.engine,
        providers=args.provider,
        variants=args.variant,
        batch_sizes=args.batch_sizes,
        threads=args.threads,
        warmup=args.warmup,
        iterations=args.iterations,
        max_seconds=args.max_seconds,
        data=args.data,
        split=args.split,
        limit=args.limit or None,
        opt_level=args.opt_level,
        profile=args.profile,
        force=args.force,
        note=args.note,
    )
    print((out / "bench.md").read_text(encoding="utf-8"))
    print(f"bench: {out}/bench.json, bench.md, bench.csv, pareto.png")
    return 0
