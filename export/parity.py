"""Does the exported file compute what the Keras model computes? Measured, never assumed.

An export is only as good as its agreement with the model it came from: converters drop or
rewrite ops, and quantization trades accuracy for speed. This module runs an ONNX model with
ONNX Runtime on a batch of images and compares its probabilities with a reference:

- ``max_abs_diff``: the largest absolute probability difference over all images and classes;
- ``top1_agreement``: the share of images whose predicted class is the same;
- ``accuracy`` of both (when labels are known) and the change.

fp32 exports must pass (``max_abs_diff <= atol`` and top-1 agreement ``>= min_agreement``).
A top-1 flip between two classes whose reference probabilities are within ``2·atol`` of each other
is a numerical tie, not a disagreement, and is reported separately (``ties``); agreement passes
when it meets the bar or when every flip is such a tie. fp16/int8 are reported, not gated.
"""

from __future__ import annotations

from typing import Any

import numpy as np

DEFAULT_ATOL = 1e-3  # TF and ONNX Runtime float32 kernels differ by up to ~7e-4 on od_std (log/exp) members, top-1 agreement 1.0 (pbc_cpu_v3.md); real conversion errors are >1e-2
DEFAULT_MIN_AGREEMENT = 0.999


def session(model, providers: list[str] | None = None, threads: int = 0):
    """An ONNX Runtime session for a path or serialized bytes (CPU unless ``providers`` given)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    if hasattr(model, "SerializeToString"):
        model = model.SerializeToString()
    return ort.InferenceSession(
        model if isinstance(model, bytes) else str(model), opts, providers=providers or ["CPUExecutionProvider"]
    )


def run_session(sess, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Probabilities ``(N, C)`` float32 for images ``(N, S, S, 3)`` fed as float32 in batches."""
    name = sess.get_inputs()[0].name
    out = [
        sess.run(None, {name: np.ascontiguousarray(images[i : i + batch_size], dtype=np.float32)})[0]
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(out, axis=0).astype(np.float32)


def compare(
    reference: np.ndarray,
    candidate: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    atol: float | None = DEFAULT_ATOL,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    reference_name: str = "keras",
) -> dict[str, Any]:
    """Parity report of ``candidate`` probabilities against ``reference`` (both ``(N, C)``).

    With ``atol=None`` nothing is gated (``passed`` is None): used for fp16/int8, whose accuracy
    change is the point of the report.
    """
    ref, cand = np.asarray(reference, dtype=np.float64), np.asarray(candidate, dtype=np.float64)
    if ref.shape != cand.shape or ref.ndim != 2:
        raise ValueError(f"parity needs two (N, C) arrays of one shape, got {ref.shape} and {cand.shape}")
    n = len(ref)
    finite = bool(np.all(np.isfinite(cand)))
    diff = np.abs(ref - cand)
    top_ref, top_cand = ref.argmax(1), cand.argmax(1)
    flips = np.flatnonzero(top_ref != top_cand)
    tol = 2 * (atol if atol is not None else 0.0)
    gaps = ref[flips, top_ref[flips]] - ref[flips, top_cand[flips]]
    ties = int(np.sum(gaps <= tol)) if atol is not None else 0
    agreement = float(1.0 - len(flips) / n) if n else 1.0
    report: dict[str, Any] = {
        "reference": reference_name,
        "images": n,
        "max_abs_diff": float(diff.max()) if n else 0.0,
        "mean_abs_diff": float(diff.mean()) if n else 0.0,
        "top1_agreement": agreement,
        "top1_disagreements": int(len(flips)),
        "finite": finite,
    }
    if labels is not None:
        labels = np.asarray(labels)
        acc_ref = float(np.mean(top_ref == labels)) if n else float("nan")
        acc_cand = float(np.mean(top_cand == labels)) if n else float("nan")
        report.update(accuracy_reference=acc_ref, accuracy=acc_cand, accuracy_change=acc_cand - acc_ref)
    if atol is None:
        report["passed"] = None
        return report
    agreement_ok = agreement >= min_agreement or ties == len(flips)
    report.update(
        atol=atol,
        min_agreement=min_agreement,
        ties=ties,
        passed=bool(finite and report["max_abs_diff"] <= atol and agreement_ok),
    )
    return report


def describe_failure(report: dict[str, Any]) -> str:
    """One line saying why a gated parity report failed."""
    parts = []
    if not report.get("finite", True):
        parts.append("non-finite outputs")
    if report["max_abs_diff"] > report.get("atol", float("inf")):
        parts.append(f"max |Δp| {report['max_abs_diff']:.3g} > {report['atol']:.0e}")
    if (
        report["top1_agreement"] < report.get("min_agreement", 0)
        and report.get("ties", 0) < report["top1_disagreements"]
    ):
        parts.append(f"top-1 agreement {report['top1_agreement']:.4%} < {report['min_agreement']:.1%}")
    return ", ".join(parts) or "unknown"
