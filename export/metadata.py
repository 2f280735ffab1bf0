"""What an exported ``.onnx`` file says about itself (ONNX ``metadata_props``).

Why: the file alone must be enough to use the model correctly: which class each output column
is, what size and pixel range the input has, where it came from and whether it was verified
against Keras. Keys are namespaced ``zoo.*``; structured values are JSON strings (ONNX metadata
values are strings only). Reading goes through ONNX Runtime's ``custom_metadata_map`` in the
predictor, so this module needs neither TensorFlow nor a second parse of the model.
"""

from __future__ import annotations

import json
from typing import Any

from zoo.errors import ZooError

PREFIX = "zoo."
# Every key the predictor needs to feed the model and name its outputs.
REQUIRED = ("zoo.classes", "zoo.input", "zoo.kind")
# Plain-language preprocessing recipe; the model itself does scaling/normalisation.
PREPROCESSING = (
    "decode to RGB (EXIF orientation applied, grayscale/RGBA/16-bit converted), resize bilinear to "
    "image_size x image_size, feed float32 pixels in 0..255, layout NHWC; normalisation happens inside the model"
)


def zoo_version() -> str:
    from zoo.version import version

    return version()


def build(
    *,
    name: str,
    kind: str,
    classes: list[str],
    image_size: int,
    source_card_sha256: str,
    variant: str = "fp32",
    extra: dict[str, Any] | None = None,
) -> dict[str, str]:
    """The ``zoo.*`` metadata of one exported file (values already JSON/strings)."""
    props: dict[str, Any] = {
        "zoo.name": name,
        "zoo.kind": kind,
        "zoo.variant": variant,
        "zoo.classes": classes,
        "zoo.input": {
            "name": "images",
            "image_size": int(image_size),
            "channels": 3,
            "range": [0, 255],
            "dtype": "float32",
            "layout": "NHWC",
            "color": "RGB",
        },
        "zoo.output": {"name": "probs", "kind": "probabilities"},
        "zoo.preprocessing": PREPROCESSING,
        "zoo.source_card_sha256": source_card_sha256,
        "zoo.version": zoo_version(),
    }
    for key, value in (extra or {}).items():
        props[key if key.startswith(PREFIX) else PREFIX + key] = value
    return {k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in props.items()}


def attach(model, props: dict[str, str], replace: bool = False) -> None:
    """Set ``props`` in an ``onnx.ModelProto``'s ``metadata_props`` in place.

    Other keys are kept, except every ``zoo.*`` key when ``replace`` (a derived file, e.g. the
    int8 copy, must not inherit its parent's variant or parity record).
    """
    keep = [
        (p.key, p.value)
        for p in model.metadata_props
        if p.key not in props and not (replace and p.key.startswith(PREFIX))
    ]
    del model.metadata_props[:]
    for key, value in keep + sorted(props.items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def as_dict(model) -> dict[str, str]:
    """``metadata_props`` of an ``onnx.ModelProto`` as a dict."""
    return {p.key: p.value for p in model.metadata_props}


def parse(raw: dict[str, str], where: str) -> dict[str, Any]:
    """Decode the ``zoo.*`` entries of a raw string map (JSON values decoded), validating the essentials.

    Raises :class:`ZooError` when the file was not written by ``zoo export`` (no classes or
    input description): without them nobody can tell what the outputs mean.
    """
    missing = [k for k in REQUIRED if k not in raw]
    if missing:
        raise ZooError(
            f"{where}: not a zoo export (ONNX metadata lacks {', '.join(missing)}); "
            "export models with 'zoo export' so the file records its classes and input size"
        )
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if not key.startswith(PREFIX):
            continue
        short = key[len(PREFIX) :]
        try:
            out[short] = json.loads(value)
        except json.JSONDecodeError:
            out[short] = value
    from zoo import validate

    classes, inp = out.get("classes"), out.get("input")
    validate.class_names(classes, f"{where}: metadata 'zoo.classes'")
    if not isinstance(inp, dict):
        raise ZooError(f"{where}: metadata 'zoo.input' must be a JSON object recording image_size")
    validate.image_size(inp.get("image_size"), f"{where}: metadata 'zoo.input.image_size'")
    for key in ("range", "dtype", "layout", "channels"):
        expected = {"range": [0, 255], "dtype": "float32", "layout": "NHWC", "channels": 3}[key]
        if key in inp and inp[key] != expected:
            raise ZooError(f"{where}: metadata 'zoo.input.{key}' is {inp[key]!r}; this zoo feeds {expected!r}")
    parity = out.get("parity")
    if parity is not None:
        if not isinstance(parity, dict) or parity.get("passed") not in (True, False, None):
            raise ZooError(
                f"{where}: metadata 'zoo.parity' must be a JSON object whose 'passed' is true, false or null (ungated)"
            )
        for key in ("max_abs_diff", "top1_agreement"):
            if key in parity:
                validate.number(parity[key], f"{where}: metadata 'zoo.parity.{key}'", low=0)
    return out
