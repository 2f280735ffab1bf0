"""``zoo bench``: latency, throughput, memory, cost and accuracy of exports, runs and ensembles side by side.

    from export.bench import bench
    bench(["runs/pbc/exports/member-custom_cnn"], "bench-out", batch_sizes=[1, 128], data="../shared/data/pbc128")

Writes ``bench.json``, ``bench.md``, ``bench.csv`` and ``pareto.png`` into the output folder.
Imports onnxruntime on use; TensorFlow only for Keras rows and in-memory conversion.
"""

from __future__ import annotations

from export.bench.run import COLUMNS, bench

__all__ = ["COLUMNS", "bench"]
