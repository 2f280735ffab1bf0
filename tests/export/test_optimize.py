"""Exact graph rewrites before export (AveragePool + 1x1 Conv folding) and the int8 op choice per graph."""

from __future__ import annotations

import numpy as np
import pytest


def _pool_proj_model(size: int):
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((6, 4, 1, 1)).astype(np.float32), "w")
    nodes = [
        helper.make_node("AveragePool", ["x"], ["p"], kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 0, 0]),
        helper.make_node("Conv", ["p", "w"], ["c"], kernel_shape=[1, 1]),
        helper.make_node("Relu", ["c"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "t",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 6, size // 2, size // 2])],
        [w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("size", [8, 7])  # odd sizes: both floor the last row/column away
def test_avgpool_and_1x1_conv_fold_into_one_exact_strided_conv(size):
    import onnx
    import onnxruntime as ort

    from export.optimize import fold_avgpool_into_conv

    model = _pool_proj_model(size)
    x = np.random.default_rng(1).standard_normal((3, 4, size, size)).astype(np.float32)
    before = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    folded, n = fold_avgpool_into_conv(model)
    onnx.checker.check_model(folded, full_check=True)
    assert n == 1 and [nd.op_type for nd in folded.graph.node] == ["Conv", "Relu"]
    after = ort.InferenceSession(folded.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert after.shape == before.shape and np.abs(after - before).max() < 1e-5


def test_pool_feeding_two_consumers_is_left_alone():
    from onnx import helper

    from export.optimize import fold_avgpool_into_conv

    model = _pool_proj_model(8)
    model.graph.node.append(helper.make_node("Relu", ["p"], ["p2"]))
    _, n = fold_avgpool_into_conv(model)
    assert n == 0 and [nd.op_type for nd in model.graph.node][0] == "AveragePool"


def test_int8_op_choice_quantizes_plain_cnns_end_to_end_but_not_layernorm_graphs():
    from onnx import helper

    from export.quantize import CNN_OPS, QUANTIZED_OPS, default_op_types

    cnn = _pool_proj_model(8)
    assert default_op_types(cnn) == CNN_OPS
    cnn.graph.node.append(helper.make_node("ReduceMean", ["y"], ["m"], name="ln_mean"))
    assert default_op_types(cnn) == QUANTIZED_OPS
    assert default_op_types(cnn, keep_float=["ln_mean"]) == CNN_OPS  # a float head does not count
