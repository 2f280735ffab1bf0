"""``zoo report``: one self-contained HTML page that tells a run's whole story.

Hematology researchers and lab engineers read this page rather than Markdown tables: the data,
how training went, members vs ensembles with confidence intervals, what distillation kept, the
exports' parity and sizes, speed vs accuracy, confusions, calibration, robustness to another
lab's images, and the most confident mistakes with the model's Grad-CAM. Each section renders
what the run has and says plainly what it lacks. The page is written to
``<run>/report/index.html``; generated figures go to ``<run>/report/figures/``.

Core module: it reads artifact files only. The application layer passes the pipeline layout
(``zoo.pipeline.Context``) and an ``explainer_for(folder)`` factory (ensembles and ONNX exports
need packages the core does not import).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zoo.artifacts import write_text
from zoo.report import sections as sec
from zoo.report.render import Section, render

log = logging.getLogger(__name__)
REPORT_FILE = "index.html"


def build_report(layout, explainer_for: Callable[[Path], Any] | None = None) -> Path:
    """Write ``<run>/report/index.html`` for the pipeline run described by ``layout``; returns its path."""
    t0 = time.time()
    builders: list[tuple[str, str, Callable[[], Section]]] = [
        ("overview", "Results at a glance", lambda: sec.overview(layout)),
        ("data", "Data", lambda: sec.data(layout)),
        ("training", "Training curves", lambda: sec.training(layout)),
        ("members", "Per-member metrics", lambda: sec.member_metrics(layout)),
        ("ensembles", "Ensemble comparison", lambda: sec.ensemble_comparison(layout)),
        ("distillation", "Distillation", lambda: sec.distillation(layout)),
        ("export", "ONNX export: parity and sizes", lambda: sec.exports(layout)),
        ("benchmark", "Benchmark: accuracy vs speed", lambda: sec.benchmark(layout)),
        ("confusion", "Confusion matrices", lambda: sec.confusion(layout)),
        ("reliability", "Reliability diagrams", lambda: sec.reliability(layout)),
        ("robustness", "Clean vs shifted accuracy", lambda: sec.robustness(layout)),
        ("mistakes", "Most confident mistakes", lambda: sec.gallery(layout, explainer_for)),
    ]
    sections = []
    for sid, title, build in builders:
        try:
            sections.append(build())
        except Exception as exc:  # one unreadable artifact must not cost the reader the whole page
            log.warning("report section '%s' failed: %s", title, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            s = Section(sid, title)
            s.missing(f"This section could not be built: {type(exc).__name__}: {exc}")
            sections.append(s)
    cfg = layout.cfg
    facts = [
        ("run", str(layout.root)),
        ("config", cfg.name),
        ("data", f"{cfg.data.source} @ {cfg.sizes_text()}"),
        ("members", str(len(cfg.members))),
        ("generated", time.strftime("%Y-%m-%d %H:%M")),
    ]
    html = render(
        f"{cfg.name}: blood-cell classifier report",
        "From data to deployable model: what was trained, how well it works, where it fails and how fast it runs.",
        sections,
        facts,
    )
    path = write_text(Path(layout.report_dir()) / REPORT_FILE, html)
    log.info("report: %s (%.0f KB, %.0fs)", path, path.stat().st_size / 1024, time.time() - t0)
    return path
