"""Data layer: every source becomes one :class:`Dataset` of uint8 images at a fixed size.

``load_dataset(source, image_size)`` understands:

- ``synthetic`` or ``synthetic:N`` — the built-in offline generator (N images, default 1200);
- a folder — class-folder tree, with or without ``train/val/test`` sub-folders;
- ``*.npz`` — MedMNIST (``train_images`` …) or AN2DL-style (``images``, ``labels``);
- ``bloodmnist`` or ``bloodmnist:SIZE`` — the official BloodMNIST file, downloaded once.
"""

from __future__ import annotations

import logging
from pathlib import Path

from zoo.data.dataset import SPLITS, Dataset, Split, split_kwargs
from zoo.errors import ZooError

log = logging.getLogger(__name__)

__all__ = ["Dataset", "Split", "SPLITS", "load_dataset", "describe_sources", "split_kwargs"]


def describe_sources() -> str:
    return "'synthetic[:N]', a class-folder path, a .npz file (MedMNIST or AN2DL), or 'bloodmnist[:28|64|128|224]'"


def load_dataset(
    source: str,
    image_size: int,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    skip_bad: bool = False,
) -> Dataset:
    """Load ``source`` resized to ``image_size`` (see module docstring for what ``source`` may be)."""
    if not isinstance(image_size, int) or not 8 <= image_size <= 1024:
        raise ZooError(f"image size must be an integer in 8..1024, got {image_size!r}")
    source = str(source).strip()
    kw = dict(seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)
    name, _, arg = source.partition(":")
    if name == "synthetic":
        from zoo.data.synthetic import load_synthetic

        n = _int_arg(arg, source, default=1200)
        if n < 16:
            raise ZooError(f"'{source}': the synthetic set needs at least 16 images")
        return load_synthetic(image_size, n=n, **kw)
    if name == "bloodmnist" and not Path(source).exists():
        from zoo.data.medmnist import fetch_bloodmnist
        from zoo.data.npz import load_npz

        return load_npz(fetch_bloodmnist(_int_arg(arg, source, default=64)), image_size, **kw)
    path = Path(source).expanduser()
    if path.is_dir():
        from zoo.data.folders import load_folder

        return load_folder(path, image_size, skip_bad=skip_bad, **kw)
    if path.suffix.lower() == ".npz":
        from zoo.data.npz import load_npz

        return load_npz(path, image_size, **kw)
    if path.exists():
        raise ZooError(f"{source}: not a folder or .npz file; --data takes {describe_sources()}")
    raise ZooError(f"unknown data source '{source}' (no such file or folder); --data takes {describe_sources()}")


def _int_arg(arg: str, source: str, default: int) -> int:
    if not arg:
        return default
    try:
        return int(arg)
    except ValueError:
        raise ZooError(f"'{source}': expected a number after ':'") from None
