"""Smaller and faster variants of an fp32 export: static int8 (QDQ) for CPUs, fp16 for GPUs.

Both are produced with the maintained tools, not hand-written passes:

- int8: ``onnxruntime.quantization`` — ``quant_pre_process`` (shape inference + graph
  clean-up; symbolic shape inference only when ``sympy`` is installed, which CNNs do not need),
  then ``quantize_static`` in QDQ format with per-channel weights (u8 activations x s8 weights:
  the VNNI ``vpdpbusd`` kernels; plain CNNs end to end, see :data:`CNN_OPS`), calibrated on training images
  through a :class:`CalibrationDataReader`. The classifier head (each Softmax and the
  Dense/MatMul + bias chain feeding it) and the ensemble combination (``ens_*`` nodes) stay in
  float: a quantized softmax rounds probabilities to 1/256 steps (top-1 ties), quantized logits
  become coarse log-probabilities for a stacking meta-learner, and the head is a negligible
  share of the compute — the convolutions are where int8 pays.
- fp16: ``onnxconverter_common.float16.convert_float_to_float16`` when installed, else the copy
  that ships in ``onnxruntime.transformers.float16``; inputs/outputs stay float32
  (``keep_io_types``) so callers feed the same arrays, and Softmax plus the ensemble
  combination stay float32 (log of fp16 probabilities near 0 is too coarse for stacking).
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from zoo.errors import ZooError
from zoo.runs import RESIZE_LAYER_PATTERN

log = logging.getLogger(__name__)

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


def _reader(images: np.ndarray, input_name: str, batch_size: int):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        """Feeds calibration images in batches (float32 0..255, the model's input contract)."""

        def __init__(self) -> None:
            self._batches: Iterator[np.ndarray] = iter(range(0, len(images), batch_size))

        def get_next(self):
            start = next(self._batches, None)
            if start is None:
                return None
            return {input_name: np.ascontiguousarray(images[start : start + batch_size], dtype=np.float32)}

        def rewind(self) -> None:
            self._batches = iter(range(0, len(images), batch_size))

    return Reader()


HEAD_OPS = ("MatMul", "Gemm", "Add", "Identity", "Reshape", "Squeeze", "Flatten")
# Only ops with weights run in int8. Elementwise chains (LayerNorm as ReduceMean/Sub/Pow/Div,
# erf-GELU, LayerScale Mul, residual Add) lose too much as uint8 activations: quantizing every
# op cost convnext_atto 7.9 accuracy points on PBC val, against 0.06 for custom_cnn.
QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")
# A plain CNN (Conv/ReLU/residual Add/pooling, no normalisation or smooth activations in the graph) runs
# int8 end to end: activations stay uint8 from one QLinearConv to the next instead of a Dequantize/Quantize
# pair around every conv and float Add/pool kernels in between. The ORT profile of custom_cnn put those
# pairs and float ops at ~22% of int8 kernel time, and the conv-only student ran *slower* than fp32
# (0.92x); quantizing the whole CNN brought it to 1.45x and custom_cnn to 1.9-2.6x (bench_cpu.md).
CNN_OPS = (
    "Conv",
    "MatMul",
    "Gemm",
    "Add",
    "Relu",
    "Clip",
    "Mul",
    "AveragePool",
    "MaxPool",
    "GlobalAveragePool",
    "Concat",
)
# Ops whose presence means the graph has LayerNorm / GELU-style chains that lose accuracy as uint8.
PRECISION_SENSITIVE_OPS = (
    "ReduceMean",
    "Erf",
    "Pow",
    "Div",
    "Sqrt",
    "LayerNormalization",
    "Sigmoid",
    "Tanh",
    "Exp",
    "Log",
    "Softplus",
    "HardSigmoid",
    "BatchNormalization",
    "InstanceNormalization",
)


def default_op_types(model, keep_float: list[str] | tuple[str, ...] = ()) -> tuple[str, ...]:
    """:data:`CNN_OPS` for a plain CNN, else :data:`QUANTIZED_OPS` (nodes kept in float do not count)."""
    keep = set(keep_float)
    sensitive = sorted(
        {n.op_type for n in model.graph.node if n.op_type in PRECISION_SENSITIVE_OPS and n.name not in keep}
    )
    if sensitive:
        log.info("int8: graph has %s: quantizing only %s", ", ".join(sensitive), "/".join(QUANTIZED_OPS))
        return QUANTIZED_OPS
    return CNN_OPS


RESIZE_NODE = re.compile(rf"(^|/){RESIZE_LAYER_PATTERN}")


def float_nodes(model, exclude_ops=("Softmax",), exclude_prefixes=("ens_",), max_depth: int = 6) -> list[str]:
    """Names of nodes to keep in float: ``exclude_ops``, ``exclude_prefixes`` and each Softmax's head.

    The head is found by walking back from a Softmax through :data:`HEAD_OPS` (the Dense layer's
    MatMul + bias Add, reshapes) until the first other op (global pooling, an activation). A mixed-size
    ensemble's in-graph resizes (``resize_<in>_to_<own>``: MatMuls on raw pixels) stay float too:
    they are cheap, and int8 filter weights would shift every pixel the member sees.
    """
    producer = {out: n for n in model.graph.node for out in n.output}
    keep = {
        n.name
        for n in model.graph.node
        if n.op_type in exclude_ops or n.name.startswith(tuple(exclude_prefixes)) or RESIZE_NODE.search(n.name)
    }
    for n in model.graph.node:
        if n.op_type != "Softmax":
            continue
        frontier, depth = [n], 0
        while frontier and depth < max_depth:
            nxt = []
            for node in frontier:
                for name in node.input:
                    p = producer.get(name)
                    if p is not None and p.op_type in HEAD_OPS and p.name not in keep:
                        keep.add(p.name)
                        nxt.append(p)
            frontier, depth = nxt, depth + 1
    return sorted(keep)


def quantize_int8(
    fp32_path: str | Path,
    out_path: str | Path,
    calibration_images: np.ndarray,
    *,
    per_channel: bool = True,
    method: str = "minmax",
    batch_size: int = 32,
    exclude_ops: tuple[str, ...] = ("Softmax",),
    exclude_prefixes: tuple[str, ...] = ("ens_",),
    op_types: tuple[str, ...] | None = None,
    external_data: bool = False,
) -> Path:
    """Write a static int8 QDQ model of ``fp32_path`` to ``out_path`` (returns it).

    ``op_types=None`` picks them from the graph (:func:`default_op_types`).
    """
    import importlib.util

    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in CALIBRATION_METHODS:
        raise ZooError(f"calibration method {method!r} is not one of {CALIBRATION_METHODS}")
    if calibration_images is None or len(calibration_images) == 0:
        raise ZooError("int8 quantization needs calibration images (none were given or found)")
    if calibration_images.ndim != 4 or calibration_images.shape[-1] != 3:
        raise ZooError(f"calibration images must be (N, S, S, 3), got {calibration_images.shape}")
    calib = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[method]
    out_path = Path(out_path)
    with tempfile.TemporaryDirectory(prefix="zoo-quant-", dir=out_path.parent) as tmp:
        pre = Path(tmp) / "preprocessed.onnx"
        quant_pre_process(
            str(fp32_path),
            str(pre),
            skip_symbolic_shape=importlib.util.find_spec("sympy") is None,
            save_as_external_data=external_data,
        )
        model = onnx.load(str(pre), load_external_data=False)
        if not external_data:  # int8 only: in fp32 the folded conv measured slower than pool + 1x1 (export/optimize.py)
            from export.optimize import fold_avgpool_into_conv

            model, folded = fold_avgpool_into_conv(model)
            if folded:
                onnx.save(model, str(pre))
        input_name = model.graph.input[0].name
        exclude = float_nodes(model, exclude_ops, exclude_prefixes)
        if op_types is None:
            op_types = default_op_types(model, exclude)
        quantize_static(
            str(pre),
            str(out_path),
            _reader(calibration_images, input_name, batch_size),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=calib,
            nodes_to_exclude=exclude,
            op_types_to_quantize=list(op_types),
            extra_options={"CalibTensorRangeSymmetric": False},
            use_external_data_format=external_data,
        )
    log.info(
        "int8: %s (%d calibration images, %s, per_channel=%s, ops %s)",
        out_path.name,
        len(calibration_images),
        method,
        per_channel,
        "/".join(op_types),
    )
    return out_path


def to_fp16(model):
    """An fp16 copy of an ``onnx.ModelProto`` (float32 inputs/outputs kept)."""
    try:
        from onnxconverter_common.float16 import convert_float_to_float16
    except ImportError:  # the same converter ships inside onnxruntime
        from onnxruntime.transformers.float16 import convert_float_to_float16
    import warnings

    block = [n.name for n in model.graph.node if n.op_type == "Softmax" or n.name.startswith("ens_")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)  # one warning per tiny weight clamped to fp16's range
        try:
            big = model.ByteSize() > 1_800_000_000
        except Exception:  # noqa: BLE001 - protobuf refuses to even size a message past 2 GiB
            big = True
        # in-memory shape inference cannot serialise models past protobuf's 2 GiB
        out = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=big, node_block_list=block)
    if caught:
        log.info("fp16: %d constant(s) clamped to the fp16 range (|x| < 1e-7 or > 1e4)", len(caught))
    return out
