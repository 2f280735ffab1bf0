"""Classify images with an exported model: ONNX Runtime + PIL + numpy, no TensorFlow.

``load(path)`` opens a ``.onnx`` file or an export folder and reads everything it needs from
the file's ``zoo.*`` metadata (classes, input size, preprocessing): the file alone is enough.
``Predictor.predict(array)`` takes one image ``(H, W, 3)`` or a batch ``(N, H, W, 3)`` (uint8,
or float in 0..255) of any size and returns probabilities; :func:`predict_files` runs over
files and folders, reporting unreadable files in the output instead of failing.

Unverified models are refused: a file without a ``zoo.parity`` record was not checked
against the model it came from (it was not written by ``zoo export``, or the check was
stripped), so its outputs are not trusted by default. ``allow_unverified=True``
(``--allow-unverified``) loads it anyway with a warning; it still needs the class names and
input size, without which outputs cannot be interpreted at all.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from export import metadata as meta
from zoo.errors import ZooError

log = logging.getLogger(__name__)

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
# auto: CUDA first (TensorRT builds an engine per input shape on first use: opt in explicitly).
AUTO_ORDER = ("CUDAExecutionProvider", "TensorrtExecutionProvider", "CPUExecutionProvider")
VARIANT_FILES = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}


def select_providers(provider: str = "auto") -> list[str]:
    """ONNX Runtime execution providers for ``auto|cpu|cuda|tensorrt`` (CPU always last as fallback)."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if provider == "auto":
        chosen = [p for p in AUTO_ORDER if p in available][:1]
    elif provider in PROVIDERS:
        want = PROVIDERS[provider]
        if want not in available:
            raise ZooError(
                f"--provider {provider}: {want} is not available in this onnxruntime build (available: {', '.join(available)})"
            )
        chosen = [want] + (
            ["CUDAExecutionProvider"] if provider == "tensorrt" and "CUDAExecutionProvider" in available else []
        )
    else:
        raise ZooError(f"--provider {provider!r}: choose auto, cpu, cuda or tensorrt")
    return chosen + (["CPUExecutionProvider"] if "CPUExecutionProvider" not in chosen else [])


def resolve_model_path(path: str | os.PathLike, variant: str | None = None) -> Path:
    """A ``.onnx`` file, or the variant's file inside a verified export folder (default fp32 ``model.onnx``)."""
    path = Path(path)
    if path.is_dir():
        name = VARIANT_FILES.get(variant or "fp32")
        if name is None:
            raise ZooError(f"--variant {variant!r}: choose one of {sorted(VARIANT_FILES)}")
        target = path / name
        if not target.is_file():
            have = sorted(p.name for p in path.glob("*.onnx"))
            raise ZooError(f"{path}: no {name} in this folder (has: {', '.join(have) or 'no .onnx files'})")
        if not (path / "card.json").is_file():
            raise ZooError(f"{path}: incomplete export folder (no card.json; the export did not finish)")
        from zoo.artifacts import read_card

        card = read_card(path)  # every file's sha256: refuses a modified or partly copied folder
        if card["kind"] != "export":
            raise ZooError(f"{path}: a '{card['kind']}' folder, not an export (run 'zoo export' on it first)")
        if name not in card["files"]:  # only files the card lists are ever loaded from a verified folder
            raise ZooError(f"{path}: {name} is not one of the files its card lists (added after the export?); refused")
        _check_model_file(target)
        return target
    if variant is not None:
        raise ZooError("--variant applies to an export folder, not a single .onnx file")
    if not os.path.lexists(path):
        raise ZooError(f"{path}: no such model file or export folder")
    _check_model_file(path)
    if (path.parent / "card.json").is_file():  # a file inside an artifact folder: check it against its card
        from zoo.artifacts import read_card, sha256_file

        recorded = read_card(path.parent, verify=False)["files"].get(path.name)
        if recorded is None:
            raise ZooError(
                f"{path.parent}: '{path.name}' is not one of the files its card lists (added after the export?); "
                "refused (copy it out of the folder to use it as a stand-alone file)"
            )
        if sha256_file(path) != recorded:
            raise ZooError(
                f"{path.parent}: file '{path.name}' was modified after the card was written (sha256 mismatch)"
            )
    return path


def _check_model_file(path: Path) -> None:
    """A regular file within the model size limit (ONNX Runtime would block forever on a FIFO)."""
    from zoo.safeio import MAX_MODEL_BYTES, check_regular

    try:
        check_regular(path, MAX_MODEL_BYTES)
    except ZooError:
        raise
    except OSError as exc:
        raise ZooError(f"{path}: cannot read ({exc.strerror or exc})") from None


def prepare_batch(images: Any, size: int, what: str = "images") -> np.ndarray:
    """``(N, size, size, 3)`` float32 pixels 0..255 from one image or a batch of any size.

    uint8 (or integer 0..255) arrays are resized with the same bilinear filter as file decoding;
    float arrays are taken as 0..255 pixels and, only when they need resizing, rounded to uint8
    first. Wrong rank or channel count raises :class:`ZooError`.
    """
    from zoo.data.images import resize_array

    x = np.asarray(images)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ZooError(f"{what} must be one image (H, W, 3) or a batch (N, H, W, 3); got shape {x.shape}")
    if x.shape[-1] != 3:
        raise ZooError(f"{what} must have 3 colour channels (RGB, last axis); got shape {x.shape}")
    if x.shape[1] < 2 or x.shape[2] < 2:
        raise ZooError(f"{what} are {x.shape[1]}×{x.shape[2]} pixels, too small to classify")
    if x.dtype == np.bool_ or not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise ZooError(f"{what} must be uint8 or float pixels, got dtype {x.dtype}")
    if np.issubdtype(x.dtype, np.floating):
        if len(x) and not np.all(np.isfinite(x)):
            raise ZooError(f"{what} contain NaN or infinite pixels")
        if len(x) and float(x.max()) <= 1.0 and float(x.max()) > 0:
            log.warning("%s look like 0..1 floats; the model expects pixels in 0..255", what)
        if x.shape[1:3] == (size, size):
            return np.ascontiguousarray(x, dtype=np.float32)
        x = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    elif x.dtype != np.uint8:
        if len(x) and (x.min() < 0 or x.max() > 255):
            raise ZooError(f"{what} of dtype {x.dtype} must hold pixels in 0..255")
        x = x.astype(np.uint8)
    return resize_array(np.ascontiguousarray(x), size).astype(np.float32)


@dataclass
class Predictor:
    """An ONNX Runtime session plus what the file says about itself."""

    path: Path
    session: Any
    metadata: dict[str, Any]
    providers: list[str] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        return list(self.metadata["classes"])

    @property
    def image_size(self) -> int:
        return int(self.metadata["input"]["image_size"])

    @property
    def verified(self) -> bool:
        return isinstance(self.metadata.get("parity"), dict)

    def magnification_adapter(self, batch_size: int = 32):
        """The per-set magnification adapter from the rulers ``zoo export`` measured on the training images;
        it predicts classes ``batch_size`` images at a time."""
        from zoo.magnification import MagnificationAdapter

        rec = self.metadata.get("magnification")
        if not isinstance(rec, dict):
            raise ZooError(
                f"{self.path}: no magnification rulers in its metadata (exported before they were recorded, or "
                "without training images); re-export it with its data to use --adapt-scale"
            )
        try:
            return MagnificationAdapter.from_dict(
                rec, len(self.classes), self.image_size, predict=lambda x: self.predict(x, batch_size=batch_size)
            )
        except ZooError as exc:
            raise ZooError(f"{self.path}: {exc}; re-export it with its data to use --adapt-scale") from None

    def predict(self, images: Any, batch_size: int = 32) -> np.ndarray:
        """Probabilities ``(N, C)`` float32 for one image or a batch (any size; resized if needed)."""
        if batch_size < 1:
            raise ZooError(f"batch size must be >= 1, got {batch_size}")
        x = prepare_batch(images, self.image_size)
        name = self.session.get_inputs()[0].name
        if len(x) == 0:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        outs = [self.session.run(None, {name: x[i : i + batch_size]})[0] for i in range(0, len(x), batch_size)]
        probs = np.concatenate(outs).astype(np.float32)
        if probs.shape != (len(x), len(self.classes)):
            raise ZooError(f"{self.path}: model returned {probs.shape}, metadata promises {len(self.classes)} classes")
        from zoo.validate import probabilities

        return probabilities(probs, str(self.path), len(self.classes))  # finite, in [0, 1], rows sum to 1


def load(
    path: str | os.PathLike,
    provider: str = "auto",
    *,
    variant: str | None = None,
    allow_unverified: bool = False,
    threads: int = 0,
) -> Predictor:
    """Open an exported model (``.onnx`` file or export folder) for prediction."""
    import onnxruntime as ort

    file = resolve_model_path(path, variant)
    if file.stat().st_size == 0:
        raise ZooError(f"{file}: empty file, not an ONNX model")
    providers = select_providers(provider)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    try:
        sess = ort.InferenceSession(str(file), opts, providers=providers)
    except Exception as exc:  # noqa: BLE001 - ORT raises its own pybind types (InvalidProtobuf, Fail, …)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ZooError(f"{file}: not a valid ONNX model (corrupt or truncated?): {first[:300]}") from None
    md = meta.parse(dict(sess.get_modelmeta().custom_metadata_map), str(file))
    parity = md.get("parity")
    if not isinstance(parity, dict):
        if not allow_unverified:
            raise ZooError(
                f"{file}: no parity record in its metadata (not verified against its source model by "
                "'zoo export'); re-export it, or pass --allow-unverified to use it anyway"
            )
        log.warning(
            "%s: UNVERIFIED model (no parity record); its outputs were never checked against the source model", file
        )
    elif parity.get("passed") is False:
        raise ZooError(f"{file}: its recorded parity check failed; re-export it")
    inputs = sess.get_inputs()
    size = int(md["input"]["image_size"])
    shape = list(inputs[0].shape) if inputs else []
    if len(inputs) != 1 or len(shape) != 4 or shape[1:] != [size, size, 3]:
        raise ZooError(
            f"{file}: model input {[(i.name, i.shape) for i in inputs]} does not match its metadata "
            f"(one (batch, {size}, {size}, 3) tensor)"
        )
    if inputs[0].type != "tensor(float)":
        raise ZooError(
            f"{file}: model input '{inputs[0].name}' is {inputs[0].type}; the zoo feeds float32 pixels "
            "(tensor(float)), so this model is refused"
        )
    outputs = sess.get_outputs()
    if not outputs or outputs[0].type not in ("tensor(float)", "tensor(float16)", "tensor(double)"):
        raise ZooError(
            f"{file}: model output {[(o.name, o.type) for o in outputs]} is not a float tensor of probabilities"
        )
    pred = Predictor(file, sess, md, sess.get_providers())
    # A probe image: a model whose outputs are not probabilities is refused now, not after a run.
    pred.predict(np.full((1, size, size, 3), 128, np.uint8))
    return pred


# ----------------------------------------------------------------------------- files
def list_inputs(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Files to classify: explicit files as given, folders searched recursively for image files.

    Folder walks skip hidden files and folders (``.git``, ``.thumbnails``…) like every reader in the zoo.
    """
    from zoo.data.folders import _image_files
    from zoo.data.images import IMAGE_EXTENSIONS

    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            # Not only regular files: a FIFO or device named *.jpg is listed, then reported (never read) by _read.
            found = sorted(q for q in _image_files(p) if not q.is_dir())
            if not found:
                log.warning("%s: no image files (%s) in this folder", p, ", ".join(IMAGE_EXTENSIONS))
            files += found
        else:
            files.append(p)  # missing or unreadable: reported per file
    if not files:
        raise ZooError("no images to classify (give image files or folders containing .jpg/.png/… files)")
    return files


def _read(path: Path, size: int) -> tuple[np.ndarray | None, str]:
    from zoo.data.images import BadImage, decode
    from zoo.safeio import MAX_IMAGE_BYTES, NotReadable, read_bytes

    try:
        return decode(read_bytes(path, MAX_IMAGE_BYTES), size, name=str(path)), ""  # never blocks on a FIFO
    except BadImage as exc:
        return None, str(exc)
    except NotReadable as exc:
        return None, exc.reason
    except FileNotFoundError:
        return None, "no such file"
    except IsADirectoryError:
        return None, "is a directory"
    except OSError as exc:
        return None, f"cannot read ({exc.strerror or exc})"


def predict_files(
    model: str | os.PathLike | Predictor,
    inputs: Sequence[str | os.PathLike],
    *,
    batch_size: int = 32,
    provider: str = "auto",
    variant: str | None = None,
    allow_unverified: bool = False,
    adapt_scale: bool = False,
) -> tuple[Predictor, list[dict[str, Any]]]:
    """Classify files/folders; one record per file (``status`` "ok" or "error" with the reason).

    ``adapt_scale`` treats the readable images as one acquisition: their magnification is read against
    the rulers in the model's metadata and undone before the final prediction (:mod:`zoo.magnification`);
    every ok record carries the reading as ``magnification``. The images are then held in memory together.
    """
    from zoo.progress import progress

    if batch_size < 1:
        raise ZooError(f"--batch-size must be >= 1, got {batch_size}")
    pred = (
        model
        if isinstance(model, Predictor)
        else load(model, provider, variant=variant, allow_unverified=allow_unverified)
    )
    adapter = pred.magnification_adapter(batch_size) if adapt_scale else None  # before reading: fail fast
    files = list_inputs(inputs)
    records: list[dict[str, Any]] = []
    batch: list[tuple[int, np.ndarray]] = []

    def flush() -> None:
        if not batch:
            return
        images, extra = np.stack([im for _, im in batch]), {}
        probs = None
        if adapter is not None:
            images, z, probs = adapter(images)  # probs: of these images, when a reading computed them
            extra = {"magnification": z}
            log.info("magnification read on the set: %s", "n/a" if z is None else f"x{z:.3f}")
        if probs is None:
            probs = pred.predict(images, batch_size=batch_size)
        for (i, _), p in zip(batch, probs):
            k = int(p.argmax())
            records[i].update(
                status="ok",
                label=pred.classes[k],
                confidence=float(p[k]),
                probabilities={c: float(v) for c, v in zip(pred.classes, p)},
                **extra,
            )
        batch.clear()

    for path in progress(files, total=len(files), desc="predict"):
        image, error = _read(path, pred.image_size)
        records.append({"file": str(path), "status": "error" if image is None else "pending", "error": error})
        if image is not None:
            batch.append((len(records) - 1, image))
            if len(batch) >= batch_size and adapter is None:  # adapting: the whole set is one batch
                flush()
    flush()
    bad = sum(r["status"] != "ok" for r in records)
    if bad:
        log.warning("%d of %d file(s) could not be read; see the 'status'/'error' columns", bad, len(records))
    return pred, records


def format_predictions(
    records: list[dict[str, Any]], classes: list[str], fmt: str, model: Predictor | None = None
) -> str:
    """CSV (``file,status,class,confidence,p_<class>…,error``) or JSON text of prediction records."""
    if fmt == "json":
        doc: dict[str, Any] = {"predictions": [_json_record(r) for r in records]}
        if model is not None:
            doc = {
                "model": {
                    "file": str(model.path),
                    "name": model.metadata.get("name"),
                    "variant": model.metadata.get("variant"),
                    "classes": classes,
                    "image_size": model.image_size,
                    "providers": model.providers,
                },
                **doc,
            }
        return json.dumps(doc, indent=2) + "\n"
    if fmt != "csv":
        raise ZooError(f"unknown output format {fmt!r}: use .csv or .json")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["file", "status", "class", "confidence", *[f"p_{c}" for c in classes], "error"])
    for r in records:
        if r["status"] == "ok":
            w.writerow(
                [
                    r["file"],
                    "ok",
                    r["label"],
                    f"{r['confidence']:.6f}",
                    *[f"{r['probabilities'][c]:.6f}" for c in classes],
                    "",
                ]
            )
        else:
            w.writerow([r["file"], r["status"], "", "", *[""] * len(classes), r["error"]])
    return buf.getvalue()


def _json_record(r: dict[str, Any]) -> dict[str, Any]:
    if r["status"] == "ok":
        return {
            "file": r["file"],
            "status": "ok",
            "class": r["label"],
            "confidence": r["confidence"],
            "probabilities": r["probabilities"],
        }
    return {"file": r["file"], "status": r["status"], "error": r["error"]}


def write_predictions(
    records: list[dict[str, Any]], classes: list[str], out: str | os.PathLike, model: Predictor | None = None
) -> Path:
    """Write records to ``out`` (.csv or .json by suffix), atomically."""
    from zoo.artifacts import write_text
    from zoo.ownership import check_file_target

    out = Path(out)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in ("csv", "json"):
        raise ZooError(f"--out {out}: give a .csv or .json file name")
    check_file_target(out, force=True)  # a folder, a path under a file or a special file: one line, not a traceback
    return write_text(out, format_predictions(records, classes, fmt, model))


def summarize(records: Iterable[dict[str, Any]]) -> str:
    records = list(records)
    ok = [r for r in records if r["status"] == "ok"]
    counts: dict[str, int] = {}
    for r in ok:
        counts[r["label"]] = counts.get(r["label"], 0) + 1
    top = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
    read = [r["magnification"] for r in ok if "magnification" in r]
    scale = ""
    if read:
        z = read[0]
        scale = (
            "; magnification not measurable (too few images?), left as is"
            if z is None
            else f"; magnification read ×{z:.3f}"
        )
    return (
        f"{len(ok)} of {len(records)} image(s) classified"
        + (f" ({top})" if top else "")
        + (f"; {len(records) - len(ok)} unreadable" if len(ok) < len(records) else "")
        + scale
    )
