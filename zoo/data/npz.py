"""NumPy archives users bring: MedMNIST (``bloodmnist*.npz``) and AN2DL-style (``images``, ``labels``).

Both are read with ``allow_pickle=False``: an archive holding Python objects is refused, not
executed. Integer labels carry no names; when there are at most eight classes they are the
BloodMNIST/AN2DL order below (both datasets use it), otherwise ``class_<i>``; an archive may
also carry its own ``class_names`` array.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np

from zoo.data.dataset import SPLITS, Dataset, Fingerprint, Split, stratified_origin
from zoo.data.images import resize_array
from zoo.data.splitting import stratified_split
from zoo.errors import ZooError

# Integer labels without ``class_names`` imply max(label)+1 classes; beyond this it is a data error.
MAX_IMPLIED_CLASSES = 1000
BLOOD_CLASSES = ["basophil", "eosinophil", "erythroblast", "ig", "lymphocyte", "monocyte", "neutrophil", "platelet"]


def _open(path: Path):
    if not path.is_file():
        raise ZooError(f"{path}: no such file" + ("" if not path.exists() else " (not a regular file; not read)"))
    from zoo.safeio import MAX_ARRAY_BYTES, check_regular

    try:
        check_regular(path, MAX_ARRAY_BYTES)
        return np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ZooError(f"{path}: not a readable .npz archive ({exc})") from None


def _get(archive, path: Path, key: str) -> np.ndarray:
    if key not in archive.files:
        raise ZooError(f"{path}: missing key '{key}' (has: {', '.join(archive.files) or 'nothing'})")
    try:
        return archive[key]
    except ValueError as exc:
        raise ZooError(f"{path}: key '{key}' holds Python objects, refused ({exc})") from None


def to_uint8_rgb(images: np.ndarray, where: str) -> np.ndarray:
    """Validate and normalise an image array to ``(N, H, W, 3) uint8``."""
    if images.dtype.kind not in "uif" and images.dtype != bool:
        raise ZooError(f"{where}: images have dtype {images.dtype}, expected numbers")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise ZooError(f"{where}: images must be N×H×W×3 (or N×H×W), got shape {images.shape}")
    if images.shape[-1] not in (1, 3, 4) and images.shape[1] in (1, 3):
        images = np.moveaxis(images, 1, -1)  # channels-first
    if min(images.shape[1:3]) < 2:
        raise ZooError(
            f"{where}: images are {images.shape[1]}×{images.shape[2]} pixels (shape {images.shape}), too small to classify"
        )
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    elif images.shape[-1] == 4:
        images = images[..., :3]
    elif images.shape[-1] != 3:
        raise ZooError(f"{where}: images have {images.shape[-1]} channels, expected 1, 3 or 4")
    if images.dtype.kind == "f":
        if not np.isfinite(images).all():
            raise ZooError(f"{where}: images contain NaN or infinite values")
        hi = float(images.max()) if images.size else 0.0
        images = images * 255.0 if hi <= 1.0 else images
        images = np.clip(np.rint(images), 0, 255)
    elif images.size and (images.min() < 0 or images.max() > 255):
        raise ZooError(f"{where}: integer pixels outside 0..255")
    return images.astype(np.uint8)


def to_labels(
    labels: np.ndarray, n: int, where: str, class_names: list[str] | None = None
) -> tuple[np.ndarray, list[str] | None]:
    """Integer labels from ints, one-hot rows or class-name strings; names when the data has them."""
    if labels.ndim == 2 and labels.shape[1] > 1:
        labels = labels.argmax(axis=1)
    labels = labels.reshape(-1) if labels.ndim == 2 else labels
    if labels.ndim != 1:
        raise ZooError(f"{where}: labels must be one per image, got shape {labels.shape}")
    if len(labels) != n:
        raise ZooError(f"{where}: {n} images but {len(labels)} labels")
    if labels.dtype.kind in "US":
        names = sorted({str(x) for x in labels})
        index = {c: i for i, c in enumerate(names)}
        return np.array([index[str(x)] for x in labels], dtype=np.int64), names
    if labels.dtype.kind == "f":
        if not np.isfinite(labels).all() or (labels != np.round(labels)).any():
            raise ZooError(f"{where}: labels must be whole numbers, found NaN or fractions")
    elif labels.dtype.kind not in "iub":
        raise ZooError(f"{where}: labels have dtype {labels.dtype}, expected integers or class names")
    labels = labels.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise ZooError(f"{where}: negative label {labels.min()}")
    if class_names is not None and labels.size and labels.max() >= len(class_names):
        raise ZooError(f"{where}: label {labels.max()} out of range for {len(class_names)} classes")
    if class_names is None and labels.size and labels.max() >= MAX_IMPLIED_CLASSES:
        raise ZooError(
            f"{where}: label {labels.max()} would mean more than {MAX_IMPLIED_CLASSES} classes; "
            "fix the labels or store a 'class_names' array in the archive"
        )
    return labels, None


def default_names(num_classes: int) -> list[str]:
    return (
        BLOOD_CLASSES[:num_classes] if num_classes <= len(BLOOD_CLASSES) else [f"class_{i}" for i in range(num_classes)]
    )


def load_npz(path, image_size: int, *, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2) -> Dataset:
    path = Path(path)
    with _open(path) as archive:
        files = set(archive.files)
        names = [str(x) for x in _get(archive, path, "class_names")] if "class_names" in files else None
        fp = Fingerprint()
        fp.add(hashlib.sha256(path.read_bytes()).hexdigest())
        if "train_images" in files:  # MedMNIST layout
            splits = {}
            for split in SPLITS:
                if f"{split}_images" not in files and split != "train":
                    continue
                where = f"{path}[{split}]"
                images = to_uint8_rgb(_get(archive, path, f"{split}_images"), where)
                labels, string_names = to_labels(_get(archive, path, f"{split}_labels"), len(images), where, names)
                if string_names is not None:
                    raise ZooError(f"{where}: MedMNIST labels must be integers")
                splits[split] = Split(resize_array(images, image_size), labels)
            if not len(splits["train"]):
                raise ZooError(f"{path}: 'train_images' holds no images")
            num = names and len(names) or int(max(s.labels.max() for s in splits.values() if len(s)) + 1)
            return Dataset(str(path), names or default_names(num), splits, fp.hexdigest(), image_size, "given")
        if "images" in files:  # AN2DL layout
            images = to_uint8_rgb(_get(archive, path, "images"), str(path))
            if not len(images):
                raise ZooError(f"{path}: 'images' holds no images")
            labels, string_names = to_labels(_get(archive, path, "labels"), len(images), str(path), names)
            class_names = string_names or names or default_names(int(labels.max()) + 1 if labels.size else 1)
            whole = Split(resize_array(images, image_size), labels)
            origin = stratified_origin(seed, val_fraction, test_fraction)
            fp.add(origin)
            splits = stratified_split(whole, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)
            return Dataset(str(path), class_names, splits, fp.hexdigest(), image_size, origin)
    raise ZooError(
        f"{path}: unknown .npz layout (keys: {', '.join(sorted(files))}); expected MedMNIST "
        "('train_images', 'train_labels', …) or AN2DL ('images', 'labels')"
    )
