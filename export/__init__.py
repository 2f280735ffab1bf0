"""ONNX export, parity, quantization and the ONNX Runtime predictor.

Import cost matters here: ``zoo predict`` must start without TensorFlow, so this package's
top level only exposes the predictor (ONNX Runtime + PIL + numpy). The exporter, which needs
TensorFlow and tf2onnx, is imported on first call of :func:`export_model`.

    import export
    model = export.load("exports/vote")        # export folder or .onnx file
    probs = model.predict(images)              # (N, H, W, 3) uint8/float 0..255, any size
    model.classes, model.metadata
"""

from __future__ import annotations

from typing import Any

from export.predictor import Predictor, load, predict_files, write_predictions
from zoo import predictors as _predictors

__all__ = ["Predictor", "load", "predict_files", "write_predictions", "export_model"]


def _predictor(folder, card):
    model = load(folder, "cpu")
    return lambda images: model.predict(images, batch_size=64)


# `zoo evaluate EXPORT` scores the fp32 ONNX model through the core's registry.
_predictors.register("export", _predictor)


def export_model(source: Any, out: Any, **kwargs: Any):
    """See :func:`export.convert.export_model` (imported lazily: it needs TensorFlow)."""
    from export.convert import export_model as _export

    return _export(source, out, **kwargs)
