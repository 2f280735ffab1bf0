"""Stage factories the other packages contribute to ``zoo run`` (ensemble, distill, export).

Each factory takes ``(ctx, Stage)`` and returns a list of stages; they run in this order
after training and evaluation (the benchmark last: it reads the exports). Imports stay inside
the factories' packages, so ``zoo`` itself never imports ONNX code.
"""

from ensemble.stages import stage_distill, stage_ensemble
from export.bench.stage import bench_stages
from export.stage import export_stages

FACTORIES: list = [stage_ensemble, stage_distill, export_stages, bench_stages]
