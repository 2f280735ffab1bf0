"""``zoo export``: a run or ensemble folder -> a verified export folder of ONNX files.

The export folder (the artifact contract, like every stage's output)::

    <out>/model.onnx        fp32, always written: the verified reference export
    <out>/model.fp16.onnx   with dtype="fp16" (float32 input/output, fp16 inside; for GPUs)
    <out>/model.int8.onnx   with quantize="int8" (static QDQ, per-channel; for CPUs)
    <out>/card.json         kind "export": source, metadata, parity report of every file

Why a folder and not a bare file: the card (written last) marks it complete, hashes every
file and carries the parity report, so ``zoo run`` can skip it and nobody uses a half-written
or unverified model. Each ``.onnx`` still carries its own ``zoo.*`` metadata (classes, input
size, preprocessing, source card hash, its parity record), so a single file copied elsewhere
stays usable with ``zoo predict``.

Everything is written into a hidden sibling folder and renamed onto ``<out>`` only at the end:
when fp32 parity fails (or anything else does) a :class:`ZooError` is raised and nothing
exists under ``<out>``.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from export import metadata as meta
from export import parity
from export.ensemble_graph import INPUT, OUTPUT, build_ensemble_model, combine_numpy, member_probs_numpy
from export.reference_data import ParityData, load_inputs
from export.sources import Source, open_source
from zoo import ownership
from zoo.artifacts import card_identity, read_card, write_card
from zoo.errors import ZooError
from zoo.stage_config import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET

log = logging.getLogger(__name__)

FILES = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}


# ----------------------------------------------------------------------------- Keras -> ONNX
def keras_to_onnx(model, image_size: int, opset: int = DEFAULT_OPSET):
    """Convert one Keras model (raw pixels in, probabilities out) with tf2onnx.

    The result has one input ``images`` ``(batch, S, S, 3)`` float32 and one output ``probs``.
    """
    import tensorflow as tf
    import tf2onnx

    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or shape[1:] != (image_size, image_size, 3):
        raise ZooError(f"model input {shape} is not (None, {image_size}, {image_size}, 3) as its card says")
    spec = (tf.TensorSpec((None, image_size, image_size, 3), tf.float32, name=INPUT),)
    try:
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset)
    except Exception as exc:  # tf2onnx raises many types; a failed conversion is the user's model/opset
        raise ZooError(
            f"tf2onnx could not convert '{model.name}' at opset {opset}: {type(exc).__name__}: {exc}"
        ) from exc
    g = proto.graph
    g.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    if len(g.output) != 1:
        raise ZooError(f"'{model.name}' has {len(g.output)} outputs; zoo models return one probability tensor")
    if g.output[0].name != OUTPUT:
        from onnx import helper

        g.node.append(helper.make_node("Identity", [g.output[0].name], [OUTPUT], name="probs_identity"))
        g.output[0].name = OUTPUT
    g.output[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    return proto


def build_onnx(source: Source, opset: int = DEFAULT_OPSET, models: list | None = None):
    """The fp32 ONNX model of ``source`` (one member, or all members merged with the combination)."""
    if models is None:
        models = load_keras(source)
    protos = [keras_to_onnx(m, source.image_size, opset) for m in models]
    if source.combination is None:
        return protos[0]
    return build_ensemble_model(protos, source.combination, graph_name=f"zoo_{source.name}")


def load_keras(source: Source) -> list:
    from zoo.runs import load_model

    # A member smaller than the ensemble's input resizes it in its graph (zoo.runs.resized_input).
    return [
        load_model(path, card, input_size=source.image_size) for path, card in zip(source.members, source.member_cards)
    ]


def keras_reference(source: Source, models: list, images: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, str]:
    """Probabilities of the Keras model(s) on ``images`` and a note saying how they were combined.

    Members run in Keras (with the ensemble's TTA views); the combination is computed by
    ``ensemble.combine.combine`` (the ensemble package's own formula) when that package is
    importable, and cross-checked against this package's numpy version, else by the latter.
    """
    x = np.asarray(images, dtype=np.float32)

    def predict(model):
        return lambda v: model.predict(v, batch_size=batch_size, verbose=0)

    if source.combination is None:
        return np.asarray(models[0].predict(x, batch_size=batch_size, verbose=0), dtype=np.float32), "keras"
    comb = source.combination
    mp = [member_probs_numpy(predict(m), x, comb.tta) for m in models]
    ours = combine_numpy(mp, comb)
    try:
        from ensemble.combine import combine
    except ImportError:
        return ours, "keras members + export.ensemble_graph.combine_numpy"
    theirs = combine(source.spec, np.stack(mp)).astype(np.float32)
    gap = float(np.abs(theirs - ours).max()) if len(ours) else 0.0
    if gap > 1e-5:
        raise ZooError(
            f"{source.folder}: this exporter's combination differs from ensemble.combine by {gap:.2e}; "
            "the ensemble.json format changed — update export.ensemble_graph"
        )
    return theirs, "keras members + ensemble.combine.combine"


# ----------------------------------------------------------------------------- export
def _check_out(out: Path) -> None:
    if out.suffix.lower() == ".onnx":
        raise ZooError(
            f"--out {out}: give a folder (it will hold model.onnx, model.int8.onnx … and card.json), not a .onnx file name"
        )


# Protobuf cannot serialise more than 2 GiB: above this size the weights go to "<file>.data".
LARGE_MODEL_BYTES = 1_800_000_000


def is_large(model) -> bool:
    try:
        return model.ByteSize() > LARGE_MODEL_BYTES
    except Exception:  # noqa: BLE001 - protobuf refuses to even size a message past its limit
        return True


def _check(path: Path) -> None:
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ZooError(f"{path.name}: the exported model is not valid ONNX ({exc})") from None


def _save(model, path: Path, large: bool = False) -> None:
    """Write ``model`` (weights to ``<name>.data`` beside it when ``large``) and check the file.

    Saving with external data moves the weights out of ``model``: use the file afterwards.
    """
    import onnx

    data = path.with_name(path.name + ".data")
    if data.exists():
        data.unlink()
    if large:
        onnx.save_model(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=data.name,
            size_threshold=1024,
        )
    else:
        onnx.save_model(model, str(path))
    _check(path)


def _set_metadata(path: Path, props: dict[str, str], replace: bool = False) -> None:
    """Rewrite only the metadata of a saved model (external weights, if any, stay untouched)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    meta.attach(model, props, replace=replace)
    onnx.save_model(model, str(path))
    _check(path)


def export_model(source: str | os.PathLike, out: str | os.PathLike, *, force: bool = False, **options: Any) -> Path:
    """Export a member/student run or an ensemble folder to the export folder ``out`` (see :func:`_export_model`).

    ``out`` follows :mod:`zoo.ownership`: new, empty, or (``force``) an earlier export, never the
    source or anything else; it is locked while the export runs.
    """
    _check_out(Path(out))
    read_card(source, verify=False)  # a source that is no artifact is named first (verified in full by open_source)
    with ownership.claim(out, "export", force=force, sources=[source]) as claim:
        return _export_model(source, claim, **options)


def _export_model(
    source: str | os.PathLike,
    claim: ownership.Claim,
    *,
    opset: int = DEFAULT_OPSET,
    dtype: str = "fp32",
    quantize: str | None = None,
    calibration_data: Any = None,
    calibration_size: int = 256,
    calibration_method: str = "minmax",
    data: Any = None,
    split: str = "val",
    limit: int | None = 1000,
    images: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    batch_size: int = 64,
    atol: float = parity.DEFAULT_ATOL,
    min_agreement: float = parity.DEFAULT_MIN_AGREEMENT,
) -> Path:
    """Export a member/student run or an ensemble folder to the export folder ``out``.

    ``data``/``split``/``limit`` (or ``images``/``labels``) choose the parity images;
    ``calibration_data`` (a data source, Dataset or array; default: the train split of
    ``data``/the recorded data) feeds int8 calibration. Returns ``out``; raises
    :class:`ZooError` (leaving nothing under ``out``) when fp32 parity fails.

    Steps: check the options; load the source, parity images and calibration images; convert;
    write fp32 (the parity gate), then fp16 / int8; write the card (last); the claim publishes.
    """
    _check_options(opset, dtype, quantize, calibration_size, batch_size, limit)
    out = claim.out
    src = open_source(source)
    t0 = time.time()
    log.info("exporting %s '%s' (%d member(s), %d px) to %s", src.kind, src.name, len(src.members), src.image_size, out)
    pdata, calib, dataset = load_inputs(
        src, data, split, limit, images, labels, calibration_data, calibration_size, quantize == "int8"
    )
    models = load_keras(src)
    reference, ref_note = keras_reference(src, models, pdata.images, batch_size)
    fp32 = [build_onnx(src, opset, models)]  # a list: _write_fp32 drops the proto once saved (large models)
    del models

    with claim.staging() as tmp:
        base = dict(
            name=src.name,
            kind=src.kind,
            classes=src.classes,
            image_size=src.image_size,
            source_card_sha256=src.card_sha256,
        )
        extra = {"source_folder": src.folder.name, "opset": int(opset)}
        if src.combination is not None:
            extra["ensemble"] = src.combination.describe()
        rulers = magnification_rulers(dataset, len(src.classes))
        if rulers is not None:
            extra["magnification"] = rulers
        variants: dict[str, dict[str, Any]] = {}
        path, large, probs32, variants["fp32"] = _write_fp32(
            fp32, tmp, src, out, base, extra, reference, ref_note, pdata, batch_size, atol, min_agreement
        )
        if dtype == "fp16":
            variants["fp16"] = _write_fp16(path, tmp, base, extra, reference, probs32, pdata, batch_size, ref_note)
        if quantize == "int8":
            variants["int8"] = _write_int8(
                path,
                tmp,
                large,
                calib,
                calibration_method,
                base,
                extra,
                reference,
                probs32,
                pdata,
                batch_size,
                ref_note,
            )
        write_card(tmp, _card(src, opset, t0, pdata, variants))
    log.info("export complete: %s (%s) in %.0fs", out, ", ".join(variants), time.time() - t0)
    return out


def _check_options(
    opset: int, dtype: str, quantize: str | None, calibration_size: int, batch_size: int, limit: int | None
) -> None:
    """Reject bad options before anything is loaded."""
    if dtype not in ("fp32", "fp16"):
        raise ZooError(f"--dtype {dtype!r}: choose fp32 or fp16 (fp32 is always written as the reference)")
    if quantize not in (None, "none", "int8"):
        raise ZooError(f"--quantize {quantize!r}: only 'int8' is supported")
    if not MIN_OPSET <= int(opset) <= MAX_OPSET:
        raise ZooError(f"--opset {opset}: choose {MIN_OPSET}..{MAX_OPSET}")
    if calibration_size < 1 or batch_size < 1 or (limit is not None and limit < 1):
        raise ZooError("calibration size, batch size and parity limit must be positive")


def magnification_rulers(dataset, num_classes: int) -> dict | None:
    """The class rulers of :mod:`zoo.magnification`, measured on the training split, for the file's metadata,
    so ``zoo predict --adapt-scale`` can read a new set's magnification with the file alone. None when
    there is no training split with measurable images (the export then cannot adapt, and says so)."""
    from zoo.magnification import MIN_IMAGES, MagnificationAdapter

    train = None if dataset is None else dataset.splits.get("train")
    if train is None or len(train) < MIN_IMAGES:
        return None
    try:
        return MagnificationAdapter.from_dataset(dataset).to_dict()
    except ZooError as exc:
        log.warning("no magnification rulers in the export: %s", exc)
        return None


def _write_fp32(
    holder: list,
    tmp: Path,
    src: Source,
    out: Path,
    base: dict,
    extra: dict,
    reference,
    ref_note: str,
    pdata: ParityData,
    batch_size: int,
    atol: float,
    min_agreement: float,
):
    """Save model.onnx and gate on its parity with Keras; returns (path, large, fp32 probabilities, description).

    ``holder`` holds the ONNX proto; it is emptied once the model is saved, so a large model is not
    kept in memory while parity runs."""
    fp32 = holder.pop()
    large = is_large(fp32)
    meta.attach(fp32, meta.build(**base, variant="fp32", extra=extra))
    path = tmp / FILES["fp32"]
    _save(fp32, path, large)
    del fp32
    probs32 = parity.run_session(parity.session(path), pdata.images, batch_size)
    report = parity.compare(
        reference, probs32, pdata.labels, atol=atol, min_agreement=min_agreement, reference_name=ref_note
    )
    log.info(
        "fp32 parity: max |Δp| %.2e, top-1 agreement %.4f on %d images",
        report["max_abs_diff"],
        report["top1_agreement"],
        report["images"],
    )
    if not report["passed"]:
        raise ZooError(
            f"fp32 parity failed for '{src.name}' ({parity.describe_failure(report)}); nothing was written to {out}"
        )
    _set_metadata(path, {"zoo.parity": _json(report)})
    return path, large, probs32, _describe(tmp, "fp32", report)


def _write_fp16(
    path: Path,
    tmp: Path,
    base: dict,
    extra: dict,
    reference,
    probs32,
    pdata: ParityData,
    batch_size: int,
    ref_note: str,
) -> dict[str, Any]:
    """model.fp16.onnx from the saved fp32 model, with its (ungated) parity."""
    import onnx

    from export.quantize import to_fp16

    f16 = to_fp16(onnx.load(str(path)))
    meta.attach(f16, meta.build(**base, variant="fp16", extra=extra), replace=True)
    _save(f16, tmp / FILES["fp16"], is_large(f16))
    del f16
    return _variant(tmp, "fp16", reference, probs32, pdata, batch_size, ref_note)


def _write_int8(
    path: Path,
    tmp: Path,
    large: bool,
    calib,
    calibration_method: str,
    base: dict,
    extra: dict,
    reference,
    probs32,
    pdata: ParityData,
    batch_size: int,
    ref_note: str,
) -> dict[str, Any]:
    """model.int8.onnx (static QDQ, calibrated on ``calib``), with its (ungated) parity."""
    from export.quantize import quantize_int8

    cal_images, cal_desc = calib
    q = quantize_int8(path, tmp / FILES["int8"], cal_images, method=calibration_method, external_data=large)
    extra8 = {**extra, "calibration": {**cal_desc, "method": calibration_method, "per_channel": True, "format": "QDQ"}}
    _set_metadata(q, meta.build(**base, variant="int8", extra=extra8), replace=True)
    return _variant(tmp, "int8", reference, probs32, pdata, batch_size, ref_note)


def _card(src: Source, opset: int, t0: float, pdata: ParityData, variants: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The export's card (written last: it hashes every file)."""
    card = {
        "kind": "export",
        "name": src.name,
        "classes": src.classes,
        "input": {
            "image_size": src.image_size,
            "channels": 3,
            "range": [0, 255],
            "dtype": "float32",
            "layout": "NHWC",
            "color": "RGB",
            "name": INPUT,
            "preprocessing": meta.PREPROCESSING,
        },
        "output": {"name": OUTPUT, "kind": "probabilities"},
        "source": {
            "folder": str(src.folder),
            "kind": src.kind,
            "name": src.name,
            "card_sha256": src.card_sha256,
            # what the export is of (zoo bench pairs a folder with its export by it); evaluating it is no change
            "identity_sha256": card_identity(src.card),
        },
        "parents": [{"folder": str(src.folder), "card_sha256": src.card_sha256}],
        "export": {
            "opset": int(opset),
            "converter": _versions(),
            "seconds": round(time.time() - t0, 1),
            **({"ensemble": src.combination.describe()} if src.combination is not None else {}),
        },
        "data": pdata.description,
        "variants": variants,
        "parity": {k: v["parity"] for k, v in variants.items()},
        "metrics": {
            f"parity-{k}": {"accuracy": v["parity"].get("accuracy")}
            for k, v in variants.items()
            if v["parity"].get("accuracy") is not None
        },
    }
    if "augment_families" in src.card:  # what the source trained for, read by the shift suite
        card["augment_families"] = src.card["augment_families"]
    return card


def _describe(tmp: Path, name: str, report: dict[str, Any]) -> dict[str, Any]:
    path = tmp / FILES[name]
    data = path.with_name(path.name + ".data")
    size = path.stat().st_size + (data.stat().st_size if data.exists() else 0)
    return {
        "file": FILES[name],
        **({"external_data": data.name} if data.exists() else {}),
        "bytes": size,
        "parity": report,
    }


def _variant(
    tmp: Path, name: str, reference, probs32, pdata: ParityData, batch_size: int, ref_note: str
) -> dict[str, Any]:
    """The (ungated) parity report of a saved reduced-precision variant, recorded in its metadata."""
    path = tmp / FILES[name]
    probs = parity.run_session(parity.session(path), pdata.images, batch_size)
    report = parity.compare(reference, probs, pdata.labels, atol=None, reference_name=ref_note)
    vs32 = parity.compare(probs32, probs, pdata.labels, atol=None, reference_name="onnx fp32")
    report["vs_fp32"] = {k: vs32[k] for k in ("max_abs_diff", "top1_agreement", "accuracy_change") if k in vs32}
    log.info(
        "%s: max |Δp| %.2e vs Keras, top-1 agreement %.4f%s",
        name,
        report["max_abs_diff"],
        report["top1_agreement"],
        f", accuracy change {report['accuracy_change'] * 100:+.2f} points" if "accuracy_change" in report else "",
    )
    _set_metadata(path, {"zoo.parity": _json(report)})
    return _describe(tmp, name, report)


def _json(obj: Any) -> str:
    import json

    return json.dumps(obj, sort_keys=True)


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for dist in ("tf2onnx", "onnx", "onnxruntime", "onnxconverter-common"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


def read_export(folder: str | os.PathLike) -> dict[str, Any]:
    """The verified card of an export folder."""
    card = read_card(folder)
    if card["kind"] != "export":
        raise ZooError(f"{folder}: a '{card['kind']}' folder, not an export")
    return card
