"""Exact graph rewrites that make exported CNNs cheaper to run, applied before parity is checked.

``fold_avgpool_into_conv``: a ResNet-D style shortcut, ``AveragePool(k, stride k, no padding)``
followed by a 1x1 ``Conv`` (the ``custom_cnn`` projection), is one linear map; it equals a
single ``Conv`` with a k x k kernel and stride k whose weights are the 1x1 weights divided by
k² at every tap. Why bother: ONNX Runtime has no fused kernel for the pair, and in int8 the
``QLinearAveragePool`` it becomes was 13-22% of the kernel time in the ``onnxruntime`` profile
of ``custom_cnn`` and its student (see benchmarks/results/bench_cpu.md), more than the
projection convolution it feeds. The folded conv costs k² times the (small) projection's
MACs (custom_cnn: 80.9 -> 85.6M per image) but runs in the fast QLinearConv kernels. It is
applied to the int8 variant only (``export.quantize.quantize_int8``): in fp32 the folded graph
measured 0.77-0.88x the original (MLAS' NCHWc 1x1 path is already fast). Exact in real
arithmetic; the int8 file's accuracy is measured by ``zoo export`` as always.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def fold_avgpool_into_conv(model):
    """Rewrite every AveragePool -> 1x1 Conv pair in place; returns ``(model, number folded)``."""
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    consumers: dict[str, list] = {}
    for n in g.node:
        for name in n.input:
            consumers.setdefault(name, []).append(n)
    graph_outputs = {o.name for o in g.output}
    folded = 0
    for pool in [n for n in g.node if n.op_type == "AveragePool"]:
        a = _attrs(pool)
        k = list(a.get("kernel_shape", []))
        if (
            len(k) != 2
            or list(a.get("strides", [1, 1])) != k
            or any(a.get("pads", [0] * 4))
            or a.get("ceil_mode", 0)
            or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID", "NOTSET", "VALID")
        ):
            continue
        users = consumers.get(pool.output[0], [])
        if len(users) != 1 or pool.output[0] in graph_outputs:
            continue
        conv = users[0]
        c = _attrs(conv)
        w_init = inits.get(conv.input[1]) if conv.op_type == "Conv" and len(conv.input) > 1 else None
        if (
            w_init is None
            or c.get("group", 1) != 1
            or any(c.get("pads", [0] * 4))
            or list(c.get("strides", [1, 1])) != [1, 1]
            or c.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID", "NOTSET", "VALID")
        ):
            continue
        w = numpy_helper.to_array(w_init)
        if w.ndim != 4 or w.shape[2:] != (1, 1) or len(consumers.get(conv.input[1], [])) != 1:
            continue
        new_w = np.ascontiguousarray(np.broadcast_to(w / float(k[0] * k[1]), (*w.shape[:2], *k)), dtype=w.dtype)
        w_init.CopyFrom(numpy_helper.from_array(new_w, w_init.name))
        del conv.attribute[:]
        conv.attribute.extend(
            [
                helper.make_attribute("kernel_shape", k),
                helper.make_attribute("strides", k),
                helper.make_attribute("pads", [0, 0, 0, 0]),
                helper.make_attribute("dilations", list(c.get("dilations", [1, 1]))),
            ]
        )
        conv.input[0] = pool.input[0]
        g.node.remove(pool)
        folded += 1
    # value_info of the removed pools' outputs is stale but harmless; drop it to keep the graph clean
    if folded:
        live = {o for n in g.node for o in n.output}
        keep = [v for v in g.value_info if v.name in live]
        del g.value_info[:]
        g.value_info.extend(keep)
        log.info("folded %d AveragePool + 1x1 Conv pair(s) into strided convolutions", folded)
    return model, folded
