"""A whole ensemble as one ONNX graph: every member, the combination and the temperature.

Why one graph: a deployed ensemble should be one file, one session, one call, with nothing to
re-implement next to it. Each member is converted on its own (tf2onnx) and the graphs are
merged here: names are namespaced with :func:`onnx.compose.add_prefix` (``m0_``, ``m1_`` …), one
shared ``images`` input feeds every member through an ``Identity``, and plain ONNX ops compute
the combination. The combination is described by plain numpy arrays (:class:`Combination`), so
this module does not depend on how the ``ensemble`` package stores or fits them; the same
arithmetic is written once more in numpy (:func:`combine_numpy`) as the parity reference.

The combination is the formula of ``ensemble.combine`` (written into ``ensemble.json``); ``f`` is
the stacking feature, ``f(p) = log(p + eps)`` for ``features == "log"`` and ``f(p) = p`` for ``"prob"``:

- ``vote``:  ``z = log(Σ_m w_m p_m + eps)`` (weights used as stored; the ensemble package
  normalises them to sum to 1)
- ``stack``: ``z = concat_m f(p_m) · coefᵀ + intercept`` — a linear meta-learner (scikit-learn's
  ``coef_`` ``(C, C·M)``, column ``m·C + c`` multiplies member ``m``'s class ``c``; ``intercept_`` ``(C,)``)
- then ``p = softmax(z / T)``.

Test-time augmentation (``tta``: names from the dihedral group, ``flip_rotK`` = mirror
left-right then rotate ``K``° counter-clockwise, as ``ensemble.tta`` defines them) is in the graph
too: the transformed copies are concatenated along the batch axis, every member runs once on the
``T·N`` batch, and each member's probabilities are averaged over the ``T`` views before combining.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from zoo.errors import ZooError
from zoo.stage_config import DEFAULT_OPSET

INPUT = "images"
OUTPUT = "probs"
METHODS = ("vote", "stack")
TRANSFORMS = ("probs", "logprobs")
# ``ensemble.json`` spells the stacking features "prob"/"log".
_TRANSFORM_ALIASES = {"prob": "probs", "probs": "probs", "log": "logprobs", "logprobs": "logprobs"}
DEFAULT_EPS = 1e-7
TTA_TRANSFORMS = ("identity", "rot90", "rot180", "rot270", "flip", "flip_rot90", "flip_rot180", "flip_rot270")


@dataclass
class Combination:
    """How member probabilities become the ensemble's probabilities (all plain arrays).

    ``transform`` (stacking only) is the meta-learner's input: "probs" or "logprobs"
    (``log(p + eps)``); the ensemble package's "prob"/"log" are accepted too.
    """

    method: str
    num_members: int
    num_classes: int
    weights: np.ndarray | None = None  # (M,) for vote
    coef: np.ndarray | None = None  # (C, C*M) for stack
    intercept: np.ndarray | None = None  # (C,) for stack
    temperature: float = 1.0
    transform: str = "logprobs"
    eps: float = DEFAULT_EPS
    tta: list[str] | None = None

    def __post_init__(self) -> None:
        M, C = int(self.num_members), int(self.num_classes)
        self.num_members, self.num_classes = M, C
        if self.method not in METHODS:
            raise ZooError(f"ensemble method {self.method!r} is not one of {METHODS}")
        if self.transform not in _TRANSFORM_ALIASES:
            raise ZooError(f"ensemble input transform {self.transform!r} is not one of {TRANSFORMS}")
        self.transform = _TRANSFORM_ALIASES[self.transform]
        if M < 1 or C < 2:
            raise ZooError(f"an ensemble needs >= 1 member and >= 2 classes (got {M} members, {C} classes)")
        try:
            t, eps = float(self.temperature), float(self.eps)
        except (TypeError, ValueError):
            raise ZooError(f"ensemble temperature/eps must be numbers, got {self.temperature!r}/{self.eps!r}") from None
        if not np.isfinite(t) or t <= 0:
            raise ZooError(f"ensemble temperature must be a positive number, got {self.temperature!r}")
        if not 0 < eps < 1e-2:
            raise ZooError(f"ensemble eps must be in (0, 0.01), got {self.eps!r}")
        self.temperature, self.eps = t, eps
        if self.tta is not None:
            names = [str(n) for n in self.tta]
            unknown = [n for n in names if n not in TTA_TRANSFORMS]
            if unknown or not names or len(set(names)) != len(names):
                raise ZooError(f"TTA transforms {names} must be distinct names from {list(TTA_TRANSFORMS)}")
            self.tta = None if names == ["identity"] else names
        if self.method == "vote":
            w = np.full(M, 1.0 / M) if self.weights is None else np.asarray(self.weights, dtype=np.float64).reshape(-1)
            if w.shape != (M,) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
                raise ZooError(
                    f"vote weights must be {M} non-negative numbers with a positive sum, got {self.weights!r}"
                )
            self.weights = w
        else:
            if self.coef is None or self.intercept is None:
                raise ZooError("a stacking ensemble needs the meta-learner's 'coef' and 'intercept'")
            coef = np.asarray(self.coef, dtype=np.float64)
            intercept = np.asarray(self.intercept, dtype=np.float64).reshape(-1)
            if coef.shape != (C, C * M):
                raise ZooError(
                    f"stacking coef must have shape ({C}, {C * M}) for {M} members × {C} classes, got {coef.shape}"
                )
            if intercept.shape != (C,):
                raise ZooError(f"stacking intercept must have shape ({C},), got {intercept.shape}")
            if not (np.all(np.isfinite(coef)) and np.all(np.isfinite(intercept))):
                raise ZooError("stacking coef/intercept contain NaN or infinity")
            self.coef, self.intercept = coef, intercept

    @classmethod
    def from_spec(cls, spec: dict[str, Any], num_members: int, num_classes: int) -> Combination:
        """From the combination dict stored in ``ensemble.json`` (keys of ``ensemble.combine``)."""
        if not isinstance(spec, dict) or "method" not in spec:
            raise ZooError("ensemble combination must be a JSON object with a 'method'")
        return cls(
            method=spec["method"],
            num_members=num_members,
            num_classes=num_classes,
            weights=spec.get("weights"),
            coef=spec.get("coef"),
            intercept=spec.get("intercept"),
            temperature=spec.get("temperature", 1.0),
            transform=spec.get("features", "log") if spec["method"] == "stack" else "probs",
            eps=spec.get("eps", DEFAULT_EPS),
            tta=spec.get("tta"),
        )

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary for cards and metadata (no large arrays)."""
        out: dict[str, Any] = {
            "method": self.method,
            "members": self.num_members,
            "temperature": self.temperature,
            "eps": self.eps,
            "tta": self.tta,
        }
        if self.method == "vote":
            out["weights"] = [float(w) for w in self.weights]
        else:
            out["transform"] = self.transform
        return out


# ----------------------------------------------------------------------------- numpy reference
def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def tta_numpy(name: str, images: np.ndarray) -> np.ndarray:
    """One dihedral view of an ``(N, H, W, C)`` batch: mirror left-right, then rotate K·90° CCW."""
    if name not in TTA_TRANSFORMS:
        raise ZooError(f"unknown TTA transform '{name}'")
    x = images[:, :, ::-1] if name.startswith("flip") else images
    k = 0 if name in ("identity", "flip") else int(name.rsplit("rot", 1)[1]) // 90
    return np.ascontiguousarray(np.rot90(x, k, axes=(1, 2)))


def member_probs_numpy(predict, images: np.ndarray, tta: list[str] | None) -> np.ndarray:
    """``predict(images) -> (N, C)`` averaged over the TTA views (float64)."""
    views = tta or ["identity"]
    return sum(np.asarray(predict(tta_numpy(v, images)), dtype=np.float64) for v in views) / len(views)


def combine_numpy(member_probs: list[np.ndarray], comb: Combination) -> np.ndarray:
    """The ensemble's probabilities from its members' (float64 arithmetic, float32 result)."""
    if len(member_probs) != comb.num_members:
        raise ZooError(f"expected probabilities of {comb.num_members} members, got {len(member_probs)}")
    ps = [np.asarray(p, dtype=np.float64) for p in member_probs]
    for p in ps:
        if p.ndim != 2 or p.shape[1] != comb.num_classes or len(p) != len(ps[0]):
            raise ZooError(f"member probabilities must all be (N, {comb.num_classes}), got {[q.shape for q in ps]}")
    if comb.method == "vote":
        z = np.log(sum(w * p for w, p in zip(comb.weights, ps)) + comb.eps)
    else:
        feats = [np.log(p + comb.eps) if comb.transform == "logprobs" else p for p in ps]
        z = np.concatenate(feats, axis=1) @ comb.coef.T + comb.intercept
    return _softmax(z / comb.temperature).astype(np.float32)


# ----------------------------------------------------------------------------- ONNX graph
PREFIX = "ens_"


def _const(name: str, value: np.ndarray):
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(value, dtype=np.float32), name=name)


def combination_nodes(member_outputs: list[str], comb: Combination, output: str = OUTPUT):
    """ONNX nodes (all named ``ens_*``) and initializers computing ``output`` from member probabilities."""
    from onnx import helper

    p = PREFIX
    nodes, inits = [], [_const(p + "eps", np.array(comb.eps))]

    def node(op: str, inputs: list[str], out: str, **attrs):
        nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    if comb.method == "vote":
        terms = []
        for i, (name, w) in enumerate(zip(member_outputs, comb.weights)):
            inits.append(_const(f"{p}w{i}", np.array(w)))
            terms.append(node("Mul", [name, f"{p}w{i}"], f"{p}weighted{i}"))
        mean = node("Sum", terms, p + "mean")
        z = node("Log", [node("Add", [mean, p + "eps"], p + "mean_eps")], p + "logits")
    else:
        feats = member_outputs
        if comb.transform == "logprobs":
            feats = [
                node("Log", [node("Add", [m, p + "eps"], f"{p}eps{i}")], f"{p}log{i}")
                for i, m in enumerate(member_outputs)
            ]
        x = node("Concat", list(feats), p + "features", axis=1)
        inits += [_const(p + "coef", comb.coef), _const(p + "intercept", comb.intercept)]
        z = node("Gemm", [x, p + "coef", p + "intercept"], p + "logits", transB=1)
    if comb.temperature != 1.0:
        inits.append(_const(p + "inv_temperature", np.array(1.0 / comb.temperature)))
        z = node("Mul", [z, p + "inv_temperature"], p + "scaled")
    nodes.append(helper.make_node("Softmax", [z], [output], axis=1, name=p + "softmax"))
    return nodes, inits


def tta_nodes(views: list[str], opset: int, src: str = INPUT, out: str = PREFIX + "tta_batch"):
    """Nodes stacking the dihedral views of ``src`` (N, H, W, C) into ``out`` (T·N, H, W, C)."""
    from onnx import helper

    nodes, inits = [], []
    inits.append(helper.make_tensor(PREFIX + "rev_starts", 7, [1], [-1]))
    inits.append(helper.make_tensor(PREFIX + "rev_ends", 7, [1], [-(2**63)]))
    inits.append(helper.make_tensor(PREFIX + "rev_axis", 7, [1], [2]))
    inits.append(helper.make_tensor(PREFIX + "rev_step", 7, [1], [-1]))
    inits.append(helper.make_tensor(PREFIX + "rev_axis_h", 7, [1], [1]))

    def reverse(x: str, name: str, axis: int) -> str:  # x[:, ::-1] (axis 1) or x[:, :, ::-1] (axis 2)
        ax = PREFIX + ("rev_axis" if axis == 2 else "rev_axis_h")
        nodes.append(
            helper.make_node(
                "Slice", [x, PREFIX + "rev_starts", PREFIX + "rev_ends", ax, PREFIX + "rev_step"], [name], name=name
            )
        )
        return name

    def swap_hw(x: str, name: str) -> str:
        nodes.append(helper.make_node("Transpose", [x], [name], perm=[0, 2, 1, 3], name=name))
        return name

    outs = []
    for v in views:
        t = f"{PREFIX}tta_{v}"
        x = reverse(src, t + "_flip", 2) if v.startswith("flip") else src
        k = 0 if v in ("identity", "flip") else int(v.rsplit("rot", 1)[1]) // 90
        # numpy.rot90(x, k, axes=(1, 2)): k=1 swap(flip_W(x)); k=2 flip_W(flip_H(x)); k=3 flip_W(swap(x))
        if k == 1:
            x = swap_hw(reverse(x, t + "_r1", 2), t + "_r1t")
        elif k == 2:
            x = reverse(reverse(x, t + "_r2h", 1), t + "_r2w", 2)
        elif k == 3:
            x = reverse(swap_hw(x, t + "_r3t"), t + "_r3w", 2)
        outs.append(x)
    nodes.append(helper.make_node("Concat", outs, [out], axis=0, name=out))
    return nodes, inits


def tta_mean_nodes(src: str, out: str, views: int, num_classes: int, opset: int):
    """``src`` (T·N, C) -> ``out`` (N, C): the mean over the T views."""
    from onnx import helper

    shape = out + "_shape"
    inits = [helper.make_tensor(shape, 7, [3], [views, -1, num_classes])]
    nodes = [helper.make_node("Reshape", [src, shape], [out + "_views"], name=out + "_views")]
    if opset >= 18:
        inits.append(helper.make_tensor(out + "_axes", 7, [1], [0]))
        nodes.append(helper.make_node("ReduceMean", [out + "_views", out + "_axes"], [out], keepdims=0, name=out))
    else:
        nodes.append(helper.make_node("ReduceMean", [out + "_views"], [out], axes=[0], keepdims=0, name=out))
    return nodes, inits


def build_ensemble_model(members: list, comb: Combination, graph_name: str = "zoo_ensemble"):
    """Merge member ``onnx.ModelProto``s (each ``images -> probabilities``) into one ensemble model.

    Every member must take one NHWC float32 input of the same spatial size and return one
    ``(N, C)`` output; all must use the same opsets (they do when converted by one exporter
    call). The result has input ``images`` and output ``probs``. The ``images`` tensor (or the
    TTA batch) feeds every member through an ``Identity``; all added nodes are named ``ens_*``
    or ``m<i>_*`` so quantization can leave the combination in float.
    """
    import onnx
    from onnx import TensorProto, compose, helper

    if len(members) != comb.num_members:
        raise ZooError(f"combination expects {comb.num_members} members, got {len(members)} models")
    opsets: dict[str, int] = {}
    for m in members:
        for op in m.opset_import:
            opsets[op.domain] = max(opsets.get(op.domain, 0), op.version)
    opset = opsets.get("", opsets.get("ai.onnx", DEFAULT_OPSET))
    input_shape = None
    nodes, inits, value_info, member_outputs = [], [], [], []
    feed = INPUT
    if comb.tta:
        n, i = tta_nodes(comb.tta, opset)
        nodes += n
        inits += i
        feed = PREFIX + "tta_batch"
    for k, model in enumerate(members):
        g = model.graph
        if len(g.input) != 1 or len(g.output) != 1:
            raise ZooError(f"member {k}: expected one input and one output, got {len(g.input)} and {len(g.output)}")
        shape = [d.dim_value or None for d in g.input[0].type.tensor_type.shape.dim][1:]
        if input_shape is None:
            input_shape = shape
        elif shape != input_shape:
            raise ZooError(
                f"member {k} takes input {shape}, member 0 takes {input_shape}: one ONNX ensemble needs "
                "members trained at the same image size"
            )
        if comb.tta and (len(shape) != 3 or shape[0] != shape[1] or shape[0] is None):
            raise ZooError(f"TTA needs square, fixed-size member inputs, got {shape}")
        pm = compose.add_prefix(model, prefix=f"m{k}_")
        pg = pm.graph
        nodes.append(helper.make_node("Identity", [feed], [pg.input[0].name], name=f"m{k}_feed"))
        nodes.extend(pg.node)
        inits.extend(pg.initializer)
        value_info.extend(pg.value_info)
        out = pg.output[0].name
        if comb.tta:
            n, i = tta_mean_nodes(out, f"{PREFIX}m{k}_tta_mean", len(comb.tta), comb.num_classes, opset)
            nodes += n
            inits += i
            out = f"{PREFIX}m{k}_tta_mean"
        member_outputs.append(out)
    comb_nodes, comb_inits = combination_nodes(member_outputs, comb)
    nodes.extend(comb_nodes)
    inits.extend(comb_inits)
    graph = helper.make_graph(
        nodes,
        graph_name,
        inputs=[helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", *input_shape])],
        outputs=[helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", comb.num_classes])],
        initializer=inits,
        value_info=value_info,
    )
    merged = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid(d, v) for d, v in sorted(opsets.items())],
        producer_name="zoo.export",
    )
    merged.ir_version = max(m.ir_version for m in members)
    try:
        small = merged.ByteSize() < 2**31 - 2**20
    except Exception:  # noqa: BLE001 - protobuf refuses to even size a message past 2 GiB
        small = False
    if small:  # larger models are checked from their file once saved with external data
        onnx.checker.check_model(merged, full_check=True)
    return merged
