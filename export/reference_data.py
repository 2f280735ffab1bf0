"""Which images an export is checked and calibrated on: parity images and int8 calibration images.

An export is only as trustworthy as the images it was compared on, so they are chosen here
and recorded in the card: a given array, or a split of the data the model was trained on (its
card records the source and the split, so the same files come back at the model's size; a
changed fingerprint is warned about, a changed class list refused). Calibration takes the
*train* split, so int8 is not tuned on the images its parity is judged on; data without one
falls back to val, with a warning that the int8 figures may look optimistic.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from export.sources import Source
from zoo.errors import ZooError

log = logging.getLogger(__name__)


@dataclass
class ParityData:
    """Images (uint8 or float 0..255, at the model's size) with optional labels, and where they came from."""

    images: np.ndarray
    labels: np.ndarray | None
    description: dict[str, Any]


def load_data(data: Any, source: Source):
    """A loaded Dataset from ``data`` (Dataset, source string, ``size -> Dataset`` callable such as the
    pipeline's ``dataset_at``, or None = the source card's data)."""
    from zoo.data import Dataset, load_dataset, split_kwargs

    if callable(data) and not isinstance(data, Dataset):
        data = data(source.image_size)
    recorded = source.data
    if isinstance(data, Dataset):
        ds, spec = data, data.source
        if ds.image_size != source.image_size:
            raise ZooError(f"data '{spec}' is at {ds.image_size} px but the model takes {source.image_size} px")
    else:
        spec = data if data is not None else recorded.get("source")
        if not spec:
            raise ZooError(
                f"{source.folder}: the card records no data source; pass --data (a folder, .npz or synthetic:N)"
            )
        try:
            ds = load_dataset(str(spec), source.image_size, **split_kwargs(recorded))
        except ZooError as exc:
            raise ZooError(f"cannot load parity/calibration data '{spec}' ({exc}); pass --data") from None
    if list(ds.class_names) != source.classes:
        raise ZooError(f"data '{spec}' has classes {ds.class_names}, the model {source.classes}")
    if recorded.get("fingerprint") and ds.fingerprint != recorded["fingerprint"]:
        log.warning(
            "data '%s' fingerprint %s differs from the one the model was trained on (%s)",
            spec,
            ds.fingerprint,
            recorded["fingerprint"],
        )
    return ds


def _fit_images(images: np.ndarray, size: int, what: str) -> np.ndarray:
    from export.predictor import prepare_batch

    return prepare_batch(images, size, what=what)


def _subset(n: int, limit: int | None, seed: int = 0) -> np.ndarray:
    if limit is None or n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def parity_data(source: Source, *, data=None, split="val", limit=1000, images=None, labels=None) -> ParityData:
    """Images to compare Keras and ONNX on: a given array, else ``split`` of the data."""
    if images is not None:
        x = _fit_images(images, source.image_size, "parity images")
        y = None if labels is None else np.asarray(labels, dtype=np.int64)
        if y is not None and len(y) != len(x):
            raise ZooError(f"{len(x)} parity images but {len(y)} labels")
        idx = _subset(len(x), limit)
        return ParityData(x[idx], None if y is None else y[idx], {"source": "array", "images": int(len(idx))})
    ds = load_data(data, source)
    part = ds.split(split)
    idx = _subset(len(part), limit)
    desc = {
        "source": ds.source,
        "split": split,
        "fingerprint": ds.fingerprint,
        "images": int(len(idx)),
        "of": len(part),
    }
    return ParityData(part.images[idx], part.labels[idx], desc)


def calibration_images(source: Source, *, calibration_data=None, size: int = 256, seed: int = 0):
    """Training images for int8 calibration (an array, or the train split of a data source/Dataset;
    None: the data recorded in the source's card)."""
    if isinstance(calibration_data, np.ndarray):
        x = _fit_images(calibration_data, source.image_size, "calibration images")
        return x[_subset(len(x), size, seed)], {"source": "array", "images": int(min(len(x), size))}
    ds = load_data(calibration_data, source)
    split = "train"
    if "train" not in ds.splits or not len(ds.splits["train"]):
        split = "val"
        log.warning(
            "data '%s' has no train split: calibrating int8 on '%s' (the parity split; accuracy may look optimistic)",
            ds.source,
            split,
        )
    part = ds.split(split)
    idx = _subset(len(part), size, seed)
    return part.images[idx], {"source": ds.source, "split": split, "images": int(len(idx)), "seed": seed}


def load_inputs(
    src: Source,
    data: Any,
    split: str,
    limit: int | None,
    images,
    labels,
    calibration_data: Any,
    calibration_size: int,
    int8: bool,
) -> tuple[ParityData, Any, Any]:
    """The parity images, (for int8) the calibration images and the decoded data source (None when
    parity and calibration came as arrays); the data source is decoded once for all of them."""
    loaded: list = []

    def dataset():
        if not loaded:
            loaded.append(load_data(data, src))
        return loaded[0]

    if images is not None:
        pdata = parity_data(src, limit=limit, images=images, labels=labels)
    else:
        pdata = parity_data(src, data=dataset(), split=split, limit=limit)
    if len(pdata.images) == 0:
        raise ZooError("no parity images: the chosen split is empty")
    calib = None
    if int8:
        calib = calibration_images(
            src, calibration_data=dataset() if calibration_data is None else calibration_data, size=calibration_size
        )
    return pdata, calib, (loaded[0] if loaded else None)
