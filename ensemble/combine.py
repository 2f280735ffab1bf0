"""The combination math of an ensemble, in one place, as a function of plain arrays.

Everything that turns member probabilities into ensemble probabilities goes through
:func:`combine`, driven by the same dict that is stored in ``ensemble.json``. Fitting code
(voting, stacking, calibration), evaluation, ``predict_proba`` and the ONNX exporter's parity
check therefore all compute exactly the formula written in the artifact:

- vote:  ``p = Σ_m w_m p_m`` then ``p = softmax(log(p + eps) / T)``
- stack: ``z = intercept + coef · concat_m(f(p_m))`` with ``f(p) = p`` ("prob") or
  ``f(p) = log(p + eps)`` ("log"), then ``p = softmax(z / T)``

``coef`` has shape ``(C, M*C)``; column ``m*C + c`` multiplies ``f(p_m)[c]`` (members in
``ensemble.json`` order). Member probabilities are arrays ``(M, N, C)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.special import log_softmax, softmax

from zoo.errors import ZooError

EPS = 1e-7
METHODS = ("vote", "stack")
FEATURES = ("log", "prob")


def as_member_probs(member_probs: Any) -> np.ndarray:
    """Validate and return member probabilities as float64 ``(M, N, C)``."""
    arr = np.asarray(member_probs, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[0] < 1 or arr.shape[2] < 2:
        raise ZooError(f"member probabilities must have shape (members, samples, classes), got {arr.shape}")
    return arr


def stack_features(member_probs: np.ndarray, features: str = "log", eps: float = EPS) -> np.ndarray:
    """``concat_m f(p_m)``: ``(N, M*C)`` with member ``m``'s classes in columns ``m*C … m*C+C-1``."""
    mp = as_member_probs(member_probs)
    if features == "log":
        mp = np.log(mp + eps)
    elif features != "prob":
        raise ZooError(f"unknown stacking features '{features}'; choose from {FEATURES}")
    m, n, c = mp.shape
    return np.transpose(mp, (1, 0, 2)).reshape(n, m * c)


def logits(spec: Mapping[str, Any], member_probs: Any) -> np.ndarray:
    """Pre-temperature scores ``(N, C)``: ``log(Σ w p + eps)`` for a vote, ``z`` for a stack."""
    mp = as_member_probs(member_probs)
    method = spec["method"]
    eps = float(spec.get("eps", EPS))
    if method == "vote":
        w = np.asarray(spec["weights"], dtype=np.float64)
        if w.shape != (mp.shape[0],):
            raise ZooError(f"{len(w)} vote weights for {mp.shape[0]} members")
        return np.log(np.tensordot(w, mp, axes=1) + eps)
    if method == "stack":
        coef = np.asarray(spec["coef"], dtype=np.float64)
        intercept = np.asarray(spec["intercept"], dtype=np.float64)
        x = stack_features(mp, spec["features"], eps)
        if coef.shape != (mp.shape[2], x.shape[1]) or intercept.shape != (mp.shape[2],):
            raise ZooError(f"stacking coef {coef.shape}/intercept {intercept.shape} do not fit features {x.shape}")
        return x @ coef.T + intercept
    raise ZooError(f"unknown ensemble method '{method}'; choose from {METHODS}")


def combine(spec: Mapping[str, Any], member_probs: Any) -> np.ndarray:
    """Ensemble probabilities ``(N, C)`` float64: ``softmax(logits / T)``."""
    return softmax(logits(spec, member_probs) / float(spec.get("temperature", 1.0)), axis=1)


def log_combine(spec: Mapping[str, Any], member_probs: Any) -> np.ndarray:
    """``log`` of :func:`combine`, computed stably (for NLL)."""
    return log_softmax(logits(spec, member_probs) / float(spec.get("temperature", 1.0)), axis=1)


def formula(spec: Mapping[str, Any]) -> str:
    """The human-readable formula stored next to the arrays in ``ensemble.json``."""
    if spec["method"] == "vote":
        return "p = sum_m weights[m] * p_m; p = softmax(log(p + eps) / temperature)"
    f = "log(p_m + eps)" if spec["features"] == "log" else "p_m"
    return f"x = concat_m({f}) (member order, C columns each); z = intercept + coef @ x; p = softmax(z / temperature)"
