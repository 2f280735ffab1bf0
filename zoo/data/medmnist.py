"""Download BloodMNIST (MedMNIST v3, Yang et al. 2023) with its published MD5 into a cache.

The network is optional: a cached, verified file is used without it, and an offline machine
gets a clear error within seconds instead of a hang.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm as bar

from zoo.artifacts import atomic_path
from zoo.errors import ZooError

log = logging.getLogger(__name__)

RECORD = "https://zenodo.org/records/10519652/files"
# Published by MedMNIST (medmnist/info.py, "bloodmnist").
BLOODMNIST = {
    28: ("bloodmnist.npz", "7053d0359d879ad8a5505303e11de1dc"),
    64: ("bloodmnist_64.npz", "2b94928a2ae4916078ca51e05b6b800b"),
    128: ("bloodmnist_128.npz", "adace1e0ed228fccda1f39692059dd4c"),
    224: ("bloodmnist_224.npz", "b718ff6835fcbdb22ba9eacccd7b2601"),
}
TIMEOUT_S = 15


def cache_dir() -> Path:
    return Path(os.environ.get("ZOO_CACHE", Path.home() / ".cache" / "bloodcell-zoo"))


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_bloodmnist(size: int = 64, *, url_base: str = RECORD, timeout: float = TIMEOUT_S) -> Path:
    """Path to a verified ``bloodmnist[_SIZE].npz``, downloading it on first use."""
    if size not in BLOODMNIST:
        raise ZooError(f"BloodMNIST comes in sizes {sorted(BLOODMNIST)}, not {size}")
    name, md5 = BLOODMNIST[size]
    target = cache_dir() / "medmnist" / name
    if target.is_file():
        if _md5(target) == md5:
            return target
        log.warning("%s: checksum mismatch, downloading again", target)
    url = f"{url_base}/{name}?download=1"
    log.info("downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, atomic_path(target) as tmp:
            total = int(response.headers.get("Content-Length") or 0)
            with (
                open(tmp, "wb") as fh,
                bar(total=total or None, unit="B", unit_scale=True, desc=name, file=sys.stderr) as pb,
            ):
                for block in iter(lambda: response.read(1 << 20), b""):
                    fh.write(block)
                    pb.update(len(block))
            got = _md5(tmp)
            if got != md5:
                raise ZooError(f"{url}: downloaded file has MD5 {got}, expected {md5}; not used")
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        raise ZooError(
            f"cannot download BloodMNIST from {url} ({getattr(exc, 'reason', exc)}); "
            f"offline? put {name} in {target.parent} or pass --data path/to/{name}"
        ) from None
    return target
