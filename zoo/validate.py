"""Checks for every value read back from an artifact: cards, ``ensemble.json``, ONNX metadata, model outputs.

Why: an artifact's hashes prove it is unchanged since it was sealed, not that what was sealed is
sane — a hand-edited card re-sealed with ``write_card``, or an ONNX file whose metadata was
rewritten, must still not feed NaN weights, a 10⁹-pixel input size or duplicate class names to
the code that trusts them. Each function returns the value (normalised) or raises one-line
:class:`~zoo.errors.ZooError` naming where the value came from.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from zoo.errors import ZooError

MAX_CLASSES = 10_000
MAX_CLASS_NAME = 200
MAX_IMAGE_SIZE = 4096  # pixels per side; far above any cell crop
SHA256 = re.compile(r"^[0-9a-f]{64}$")
# A softmax in fp16 (model.fp16.onnx) sums to 1 within a few 1e-3.
PROB_ATOL, SUM_ATOL = 1e-3, 1e-2


def class_names(value: Any, where: str) -> list[str]:
    """A non-empty list of unique, non-empty, single-line strings of sane length."""
    if not isinstance(value, list) or not value:
        raise ZooError(f"{where}: class names must be a non-empty list, got {type(value).__name__}")
    if len(value) > MAX_CLASSES:
        raise ZooError(f"{where}: {len(value)} class names, above the limit of {MAX_CLASSES}")
    for c in value:
        if not isinstance(c, str) or not c.strip() or len(c) > MAX_CLASS_NAME or any(ch in c for ch in "\n\r\0"):
            raise ZooError(
                f"{where}: class name {str(c)[:60]!r} is not a non-empty one-line string of at most {MAX_CLASS_NAME} characters"
            )
    if len(set(value)) != len(value):
        dup = sorted({c for c in value if value.count(c) > 1})
        raise ZooError(f"{where}: duplicate class names {dup}")
    return list(value)


def image_size(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= MAX_IMAGE_SIZE:
        raise ZooError(f"{where}: image_size must be an integer in 2..{MAX_IMAGE_SIZE}, got {value!r}")
    return value


def number(
    value: Any, where: str, *, low: float | None = None, high: float | None = None, low_open: bool = False
) -> float:
    """A finite real number (not a bool) in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ZooError(f"{where}: must be a finite number, got {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        raise ZooError(f"{where}: must be {'>' if low_open else '>='} {low}, got {value!r}")
    if high is not None and value > high:
        raise ZooError(f"{where}: must be <= {high}, got {value!r}")
    return float(value)


def finite_array(
    value: Any, where: str, shape: tuple[int, ...] | None = None, *, nonnegative: bool = False
) -> np.ndarray:
    """A numeric array (nested lists of numbers), finite, optionally of ``shape`` and >= 0."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ZooError(f"{where}: must be an array of numbers") from None
    if isinstance(value, (str, bytes, dict)) or arr.dtype.kind not in "fiu":
        raise ZooError(f"{where}: must be an array of numbers")
    if shape is not None and arr.shape != shape:
        raise ZooError(f"{where}: shape {arr.shape}, expected {shape}")
    if not np.all(np.isfinite(arr)):
        raise ZooError(f"{where}: holds NaN or infinite values")
    if nonnegative and np.any(arr < 0):
        raise ZooError(f"{where}: holds negative values")
    return arr


def sha256(value: Any, where: str) -> str:
    if not isinstance(value, str) or not SHA256.match(value):
        raise ZooError(f"{where}: must be a sha256 (64 lowercase hex digits), got {str(value)[:80]!r}")
    return value


def probabilities(p: Any, where: str, classes: int | None = None) -> np.ndarray:
    """Rows of class probabilities: finite, in [0, 1], each summing to 1 (a model that outputs
    anything else is not a classifier the zoo can use, whatever its metadata says)."""
    arr = np.asarray(p)
    if arr.ndim != 2 or (classes is not None and arr.shape[1] != classes):
        raise ZooError(
            f"{where}: outputs have shape {arr.shape}, expected (N, {classes if classes is not None else 'C'})"
        )
    if arr.size == 0:
        return arr
    a = arr.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ZooError(f"{where}: outputs hold NaN or infinite values, not probabilities; refused")
    lo, hi = float(a.min()), float(a.max())
    if lo < -PROB_ATOL or hi > 1 + PROB_ATOL:
        raise ZooError(f"{where}: outputs range {lo:.4g}..{hi:.4g}, not probabilities in [0, 1]; refused")
    sums = a.sum(axis=1)
    worst = float(np.abs(sums - 1).max())
    if worst > SUM_ATOL:
        raise ZooError(
            f"{where}: output rows sum to {float(sums.min()):.4g}..{float(sums.max()):.4g}, not 1; not probabilities, refused"
        )
    return arr


def ensemble_spec(spec: Any, where: str) -> dict[str, Any]:
    """``ensemble.json`` as written by ``zoo ensemble``: every field the loaders and the exporter use.

    The file format lives here (not in the ``ensemble`` package) because the ONNX exporter reads
    it without importing that package.
    """
    if not isinstance(spec, dict):
        raise ZooError(f"{where}: not a JSON object")
    if spec.get("format") != 1 or isinstance(spec.get("format"), bool):
        raise ZooError(f"{where}: unsupported format {spec.get('format')!r} (this zoo reads format 1)")
    method = spec.get("method")
    if method not in ("vote", "stack"):
        raise ZooError(f"{where}: unsupported method {method!r} (vote or stack)")
    classes = class_names(spec.get("classes"), f"{where}: 'classes'")
    inp = spec.get("input")
    if not isinstance(inp, dict):
        raise ZooError(f"{where}: 'input' must be an object")
    image_size(inp.get("image_size"), f"{where}: 'input.image_size'")
    members = spec.get("members")
    if not isinstance(members, list) or not members or len(members) > 1000:
        raise ZooError(f"{where}: 'members' must be a non-empty list (at most 1000)")
    names = []
    for i, m in enumerate(members):
        if not isinstance(m, dict):
            raise ZooError(f"{where}: members[{i}] must be an object")
        for key in ("name", "path"):
            if not isinstance(m.get(key), str) or not m[key]:
                raise ZooError(f"{where}: members[{i}].{key} must be a non-empty string")
        if m.get("abs_path") is not None and not isinstance(m["abs_path"], str):
            raise ZooError(f"{where}: members[{i}].abs_path must be a string")
        sha256(m.get("card_sha256"), f"{where}: members[{i}].card_sha256")
        if "identity_sha256" in m:
            sha256(m["identity_sha256"], f"{where}: members[{i}].identity_sha256")
        names.append(m["name"])
    if len(set(names)) != len(names):
        raise ZooError(f"{where}: duplicate member names {names}")
    n_m, n_c = len(members), len(classes)
    number(spec.get("eps", 1e-7), f"{where}: 'eps'", low=0, high=0.1, low_open=True)
    number(spec.get("temperature", 1.0), f"{where}: 'temperature'", low=0, high=1e4, low_open=True)
    if method == "vote":
        w = finite_array(spec.get("weights"), f"{where}: 'weights'", (n_m,), nonnegative=True)
        if w.sum() <= 0:
            raise ZooError(f"{where}: 'weights' sum to 0")
    else:
        if spec.get("features") not in ("log", "prob"):
            raise ZooError(f"{where}: 'features' must be 'log' or 'prob', got {spec.get('features')!r}")
        finite_array(spec.get("coef"), f"{where}: 'coef'", (n_c, n_m * n_c))
        finite_array(spec.get("intercept"), f"{where}: 'intercept'", (n_c,))
    tta = spec.get("tta")
    if tta is not None and not (isinstance(tta, list) and all(isinstance(t, str) for t in tta)):
        raise ZooError(f"{where}: 'tta' must be null or a list of transform names")
    return spec
