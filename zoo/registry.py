"""Model registry: one decorator fills it, two functions are the whole API.

Modelled on timm's ``@register_model`` / ``create_model`` / ``list_models``. A builder is a
plain function ``builder(num_classes, image_size, **params) -> keras.Model`` whose keyword
defaults *are* the member's documented default hyper-parameters; the decorator records them
together with the input size and a description so ``zoo list`` can show what each member is
without building it.

Builders must put preprocessing inside the model: every model takes raw RGB pixels
(float32 in 0..255, shape ``(None, H, W, 3)``) and returns class probabilities (softmax), so a
saved or exported model needs nothing else to be used correctly.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from zoo.errors import ZooError

# Families register lazily: importing zoo.models imports every family module.
_REGISTRY: dict[str, ModelSpec] = {}


@dataclass(frozen=True)
class ModelSpec:
    """What the zoo knows about a member before building it."""

    name: str
    builder: Callable[..., Any]
    family: str
    default_image_size: int
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)
    # Training recipe overrides (e.g. two-phase fine-tuning, lower lr) read by zoo.train.
    recipe: dict[str, Any] = field(default_factory=dict)

    def build(self, num_classes: int, image_size: int | None = None, **params: Any):
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise ZooError(
                f"unknown parameter(s) {unknown} for member '{self.name}'; it takes: {sorted(self.defaults) or 'none'}"
            )
        merged = {**self.defaults, **params}
        size = int(image_size or self.default_image_size)
        if size < 16:
            raise ZooError(f"image size {size} is too small for member '{self.name}' (minimum 16)")
        return self.builder(num_classes=num_classes, image_size=size, **merged)


def register_model(
    *,
    family: str,
    default_image_size: int,
    description: str,
    name: str | None = None,
    recipe: dict[str, Any] | None = None,
):
    """Register ``builder`` under ``name`` (default: the function name).

    Hyper-parameter defaults are taken from the builder's keyword arguments, so the signature
    is the single place they are written down.
    """

    def decorate(builder: Callable[..., Any]) -> Callable[..., Any]:
        key = name or builder.__name__
        if key in _REGISTRY:
            raise ValueError(f"model '{key}' registered twice")
        sig = inspect.signature(builder)
        defaults = {
            p.name: p.default
            for p in sig.parameters.values()
            if p.name not in ("num_classes", "image_size") and p.default is not inspect.Parameter.empty
        }
        _REGISTRY[key] = ModelSpec(
            name=key,
            builder=builder,
            family=family,
            default_image_size=default_image_size,
            description=description,
            defaults=defaults,
            recipe=dict(recipe or {}),
        )
        return builder

    return decorate


def _ensure_loaded() -> None:
    import zoo.models  # noqa: F401  (registers every family)


def list_models(pattern: str = "*") -> list[str]:
    """Registered member names matching a shell-style ``pattern``, sorted."""
    _ensure_loaded()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def get_spec(name: str) -> ModelSpec:
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ZooError(f"unknown member '{name}'; registered: {', '.join(sorted(_REGISTRY))}") from None


def create_model(name: str, num_classes: int, image_size: int | None = None, **params: Any):
    """Build member ``name`` for ``num_classes`` classes (Keras model, raw pixels in, probabilities out)."""
    return get_spec(name).build(num_classes, image_size, **params)
