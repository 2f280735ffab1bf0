"""One function per report section, each reading only the artifact files of a pipeline run.

Every function takes the pipeline's layout (``zoo.pipeline.Context``: ``cfg``, ``root``,
``member_dir``, ``ensemble_dir``, ``student_dir``, ``exports_dir``, ``bench_dir``,
``report_dir``, ``curation_dir`` and the lazily loaded ``dataset``) and returns a
:class:`~zoo.report.render.Section`. Files written by other stages are read as plain JSON,
CSV and PNG — this package imports neither ``ensemble`` nor ``export`` — and a file that is not
there becomes a sentence saying so, never an exception.

One module per question a reader asks: ``summary`` (how good is each model), ``dataset`` (what
was it trained on), ``curves`` (how did training go), ``comparison`` (did the ensembles and the
student pay), ``deployment`` (is the export faithful, how fast is it), ``diagnostics`` (where
does it fail), ``shifts`` (does it survive another lab); ``reading`` is what they share.
"""

from zoo.report.sections.comparison import distillation, ensemble_comparison, member_metrics
from zoo.report.sections.curves import training
from zoo.report.sections.dataset import data
from zoo.report.sections.deployment import benchmark, exports
from zoo.report.sections.diagnostics import confusion, gallery, reliability
from zoo.report.sections.reading import report_split
from zoo.report.sections.shifts import robustness
from zoo.report.sections.summary import overview

__all__ = [
    "benchmark",
    "confusion",
    "data",
    "distillation",
    "ensemble_comparison",
    "exports",
    "gallery",
    "member_metrics",
    "overview",
    "reliability",
    "report_split",
    "robustness",
    "training",
]
