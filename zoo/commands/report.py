"""``zoo report RUN_DIR``: the run's self-contained HTML report (also the last stage of ``zoo run``)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "report",
        help="one self-contained HTML page with the whole story of a `zoo run` output folder",
        description="Writes RUN_DIR/report/index.html (figures embedded; opens offline): data, training "
        "curves, member metrics, ensemble comparison with confidence intervals, distillation, "
        "export parity and sizes, benchmark, confusion matrices, reliability, clean vs shifted "
        "accuracy and the most confident mistakes with Grad-CAM. Sections the run lacks say so.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="output folder of `zoo run` (holds config.json)")
    p.set_defaults(func=run)


def run(args) -> int:
    from zoo.pipeline import context_for_run, write_html_report, write_summary

    ctx = context_for_run(args.run_dir)
    write_summary(ctx)  # the summary table and plot too: artifacts may have changed since the run
    path = write_html_report(ctx)
    print(f"report: {path}")
    return 0
