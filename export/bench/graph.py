"""What an ONNX graph costs, counted from the graph itself: parameters and multiply-accumulates per image.

MACs are counted for the ops that do the arithmetic in these CNNs — ``Conv`` (and its
quantized forms ``ConvInteger``/``QLinearConv``), ``MatMul``/``MatMulInteger``/``QLinearMatMul``
and ``Gemm`` — from shapes that ``onnx.shape_inference`` fills in after the batch dimension is
fixed to 1. Elementwise ops, pooling and normalisation are ignored (a few percent at most).
:func:`inspect_graph` also lists what decides CPU speed: layout ``Transpose`` nodes (left by
the NHWC -> NCHW conversion), and in a quantized graph which compute ops stayed in float.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

CONV_OPS = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3}  # op -> index of the weight input
MATMUL_OPS = {"MatMul": (0, 1), "MatMulInteger": (0, 1), "QLinearMatMul": (0, 3), "Gemm": (0, 1)}
QUANT_MARKERS = (
    "QuantizeLinear",
    "DequantizeLinear",
    "QLinearConv",
    "QLinearMatMul",
    "ConvInteger",
    "MatMulInteger",
    "DynamicQuantizeLinear",
)


def _load(model):
    import onnx

    if isinstance(model, (str, Path)):
        return onnx.load(str(model), load_external_data=True)
    return model


def _shapes(model) -> dict[str, list[int | None]]:
    """Tensor name -> shape with the batch dimension set to 1 (inferred)."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    for inp in m.graph.input:
        dims = inp.type.tensor_type.shape.dim
        if len(dims) and not dims[0].HasField("dim_value"):
            dims[0].Clear()
            dims[0].dim_value = 1
    for out in m.graph.output:
        dims = out.type.tensor_type.shape.dim
        if len(dims):
            dims[0].Clear()
    try:
        m = onnx.shape_inference.infer_shapes(m, data_prop=True)
    except Exception:  # noqa: BLE001 - a graph shape inference cannot handle: count what is known
        pass
    shapes: dict[str, list[int | None]] = {}
    for vi in list(m.graph.input) + list(m.graph.value_info) + list(m.graph.output):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    for init in m.graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def _prod(dims) -> int:
    return int(np.prod([d for d in dims], dtype=np.int64)) if dims else 1


def count_parameters(model) -> int:
    """Elements of float/int8 weight initializers with more than one element (scales and zero points excluded)."""
    model = _load(model)
    n = 0
    for init in model.graph.initializer:
        size = _prod(init.dims)
        if size > 1 and init.data_type not in (6, 7):  # int32 / int64: shapes, indices, biases of QLinear ops
            n += size
    return n


def count_macs(model) -> dict:
    """``{"macs": per image, "by_op": {op: macs}, "uncounted": [...]}`` for one image."""
    model = _load(model)
    shapes = _shapes(model)
    by_op: Counter = Counter()
    uncounted = []
    for node in model.graph.node:
        op = node.op_type
        try:
            if op in CONV_OPS:
                w = shapes.get(node.input[CONV_OPS[op]])
                y = shapes.get(node.output[0])
                if not w or not y or None in w or None in y[1:]:
                    uncounted.append(node.name)
                    continue
                # weight (M, C/group, kH, kW): each output element needs C/group*kH*kW MACs
                by_op[op] += _prod(y[1:]) * _prod(w[1:])
            elif op in MATMUL_OPS:
                a = shapes.get(node.input[MATMUL_OPS[op][0]])
                y = shapes.get(node.output[0])
                if not a or not y or None in y[1:] or a[-1] is None:
                    uncounted.append(node.name)
                    continue
                k = a[-1]
                if op == "Gemm":
                    trans_a = next((att.i for att in node.attribute if att.name == "transA"), 0)
                    k = a[0] if trans_a else a[-1]
                out = _prod([d if d is not None else 1 for d in y])
                by_op[op] += out * k
        except IndexError:
            uncounted.append(node.name)
    return {"macs": int(sum(by_op.values())), "by_op": dict(by_op), "uncounted": uncounted}


def inspect_graph(model) -> dict:
    """Op histogram, layout transposes, quantization format and the compute ops left in float."""
    model = _load(model)
    ops = Counter(n.op_type for n in model.graph.node)
    producer = {o: n for n in model.graph.node for o in n.output}
    quantized = any(op in ops for op in QUANT_MARKERS)
    float_compute = []
    if quantized:
        for n in model.graph.node:
            if n.op_type in ("Conv", "MatMul", "Gemm"):
                src = producer.get(n.input[0])
                if src is None or src.op_type != "DequantizeLinear":
                    float_compute.append(f"{n.op_type}:{n.name}")
    fmt = None
    if quantized:
        fmt = "QOperator" if any(op in ops for op in ("QLinearConv", "QLinearMatMul")) else "QDQ"
    return {
        "nodes": sum(ops.values()),
        "ops": dict(sorted(ops.items(), key=lambda kv: -kv[1])),
        "transposes": ops.get("Transpose", 0),
        "quant_format": fmt,
        "float_compute_ops": float_compute,
    }
