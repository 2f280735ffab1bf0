"""What ``zoo bench MODEL`` measures: a MODEL argument resolved into ONNX files and a Keras source.

MODEL may be an export folder (its fp32/fp16/int8 files; Keras too when the run or ensemble
it was exported from is still reachable and unchanged), a run or ensemble folder (Keras, plus
the export of it that ``zoo run`` wrote next to it under ``exports/`` if there is one, else an
fp32 ONNX converted in memory for this benchmark), or a bare ``.onnx`` file (ONNX Runtime only).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.errors import ZooError
from zoo.stage_config import DEFAULT_OPSET

log = logging.getLogger(__name__)

VARIANT_FILES = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}


@dataclass
class Target:
    name: str
    kind: str  # member | student | ensemble | onnx
    image_size: int
    classes: list[str]
    onnx: dict[str, Any] = field(default_factory=dict)  # variant -> Path, or onnx.ModelProto (converted here)
    keras_source: Path | None = None  # run/ensemble folder Keras can load
    keras_note: str = ""  # why there is no Keras source
    recorded_accuracy: dict[str, float] = field(default_factory=dict)  # variant / "keras" -> accuracy from a card
    origin: str = ""


def _export_target(folder: Path) -> Target:
    from zoo.artifacts import read_card

    card = read_card(folder)
    src = card.get("source", {}) if isinstance(card.get("source"), dict) else {}
    files = {v: folder / f for v, f in VARIANT_FILES.items() if (folder / f).is_file()}
    t = Target(
        str(card["name"]),
        str(src.get("kind", "export")),
        int(card["input"]["image_size"]),
        list(card["classes"]),
        files,
        origin=str(folder),
    )
    for v, entry in (card.get("variants") or {}).items():
        acc = (entry.get("parity") or {}).get("accuracy") if isinstance(entry, dict) else None
        if acc is not None:
            t.recorded_accuracy[v] = float(acc)
    ref = (card.get("parity", {}).get("fp32") or {}).get("accuracy_reference")
    if ref is not None:
        t.recorded_accuracy["keras"] = float(ref)
    source = Path(src.get("folder", "")) if src.get("folder") else None
    if source is None or not (source / "card.json").is_file():
        t.keras_note = f"source folder {src.get('folder') or '?'} not reachable"
    else:
        try:
            if not _is_source_of(src, source, verify=True):
                t.keras_note = f"source folder {source} changed since the export"
            else:
                t.keras_source = source
        except ZooError as exc:
            t.keras_note = str(exc)
    return t


def _is_source_of(record: dict, folder: Path, *, verify: bool) -> bool:
    """Whether ``folder`` is still what an export's ``source`` record says it was made from: the same
    identity (:func:`zoo.artifacts.card_identity`; evaluating it since is no change), or for exports
    made before identities were recorded the same card hash."""
    from zoo.artifacts import card_identity, card_sha256, read_card

    if "identity_sha256" in record:
        return card_identity(read_card(folder, verify=verify)) == record["identity_sha256"]
    if card_sha256(folder) != record.get("card_sha256"):
        return False
    read_card(folder, verify=verify)
    return True


def _sibling_export(folder: Path, kind: str) -> Path | None:
    """The export ``zoo run`` wrote for this run/ensemble folder (:class:`zoo.layout.RunLayout`), if complete and current."""
    from zoo.artifacts import read_card
    from zoo.layout import RunLayout

    layout = RunLayout.of_artifact(folder, kind)
    if layout is None:
        return None
    cand = layout.export_dir(kind, folder.name)
    if not (cand / "card.json").is_file():
        return None
    try:
        card = read_card(cand, verify=False)
        return cand if _is_source_of(card.get("source") or {}, folder, verify=False) else None
    except ZooError:
        return None


def _source_target(folder: Path, card: dict, opset: int) -> Target:
    kind = card["kind"]
    exported = _sibling_export(folder, kind)
    if exported is not None:
        t = _export_target(exported)
        t.keras_source, t.keras_note = folder.resolve(), ""
        return t
    from export.convert import build_onnx
    from export.sources import open_source

    src = open_source(folder)
    log.info("%s: no export found next to it; converting to fp32 ONNX in memory (fp16/int8 need `zoo export`)", folder)
    proto = build_onnx(src, opset=opset)
    t = Target(
        src.name, kind, src.image_size, src.classes, {"fp32": proto}, keras_source=src.folder, origin=str(folder)
    )
    val = (card.get("metrics") or {}).get("val")
    if isinstance(val, dict) and val.get("accuracy") is not None:
        t.recorded_accuracy["keras"] = float(val["accuracy"])
    return t


def resolve(model: str | os.PathLike, opset: int = DEFAULT_OPSET) -> Target:
    """One benchmark target from a MODEL argument (see the module docstring)."""
    path = Path(model)
    if path.is_file():
        if path.suffix.lower() != ".onnx":
            raise ZooError(f"{path}: not an .onnx file (MODEL is an export, run or ensemble folder, or a .onnx file)")
        import onnx

        from export import metadata as meta
        from export.predictor import resolve_model_path

        resolve_model_path(path)  # a file inside an artifact folder must match its card
        try:
            m = onnx.load(str(path), load_external_data=False)
        except Exception as exc:  # noqa: BLE001 - protobuf errors of a corrupt file
            raise ZooError(f"{path}: not a valid ONNX model ({type(exc).__name__})") from None
        props = {p.key: p.value for p in m.metadata_props}
        try:
            md = meta.parse(props, str(path))
            size, classes = int(md["input"]["image_size"]), list(md["classes"])
            name = f"{md['name']} ({path.name})" if md.get("name") else path.name  # not confused with its export folder
        except ZooError:
            dims = m.graph.input[0].type.tensor_type.shape.dim
            size = dims[1].dim_value if len(dims) == 4 else 0
            out_dims = m.graph.output[0].type.tensor_type.shape.dim
            classes = [str(i) for i in range(out_dims[-1].dim_value or 0)]
            name = path.name
            if not size or not classes:
                raise ZooError(
                    f"{path}: no zoo metadata and no static (batch, S, S, 3) input / class count to bench it"
                ) from None
        variant = "int8" if ".int8." in path.name else "fp16" if ".fp16." in path.name else "fp32"
        return Target(name, "onnx", size, classes, {variant: path}, keras_note="a bare .onnx file", origin=str(path))
    if not path.is_dir():
        raise ZooError(f"{path}: no such export, run or ensemble folder or .onnx file")
    from zoo.artifacts import read_card

    card = read_card(path)
    if card["kind"] == "export":
        return _export_target(path)
    if card["kind"] in ("member", "student", "ensemble"):
        return _source_target(path, card, opset)
    raise ZooError(f"{path}: cannot benchmark a '{card['kind']}' folder")
