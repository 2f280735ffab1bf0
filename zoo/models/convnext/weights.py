"""Pretrained weights for ConvNeXt members: download, cache, verify, and map onto our layers.

``weights="imagenet"`` fetches the official Keras ConvNeXt ImageNet-1k file (the ``_notop``
variant; same URLs and sha256 as ``keras.applications.convnext``) into the Keras cache
(``~/.keras/models`` or ``$ZOO_WEIGHTS_DIR/models``), so a file Keras already downloaded is
reused and an air-gapped machine can be seeded by copying the file there. A cached file is
used only if its sha256 matches; otherwise a short reachability probe runs first, so an
offline machine gets a clear :class:`ZooError` within seconds instead of a hang.

The official files are legacy Keras HDF5 weight files: one group per ``keras.applications``
layer (``convnext_tiny_stage_0_block_0_depthwise_conv`` ...). :func:`map_official` maps them
onto our layer names by *name*, and converts the grouped ``Conv2D`` kernel ``(k, k, 1, C)`` of
each block into the ``DepthwiseConv2D`` kernel ``(k, k, C, 1)``; every array's shape is checked.
The same reader handles a file written from a ``keras.applications`` model (``include_top``
True or False) via ``weights=PATH.h5``, which is how the mapping is tested without network.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from zoo.artifacts import sha256_file
from zoo.errors import ZooError

if TYPE_CHECKING:  # pragma: no cover
    import keras

    from zoo.models.convnext.model import ConvNeXtConfig

log = logging.getLogger(__name__)

BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications/convnext/"


@dataclass(frozen=True)
class OfficialWeights:
    """One official file: ``<name>.h5`` (with the 1000-class top) and ``<name>_notop.h5``."""

    name: str
    top_sha256: str
    notop_sha256: str

    def file(self, include_top: bool = False) -> tuple[str, str]:
        """(file name, sha256)."""
        if include_top:
            return f"{self.name}.h5", self.top_sha256
        return f"{self.name}_notop.h5", self.notop_sha256


# sha256 from keras.applications.convnext.WEIGHTS_HASHES (Keras 3.15).
OFFICIAL: dict[str, OfficialWeights] = {
    "convnext_tiny": OfficialWeights(
        "convnext_tiny",
        "8ae6e78ce2933352b1ef4008e6dd2f17bc40771563877d156bc6426c7cf503ff",
        "d547c096cabd03329d7be5562c5e14798aa39ed24b474157cef5e85ab9e49ef1",
    ),
    "convnext_small": OfficialWeights(
        "convnext_small",
        "ce1277d8f1ee5a0ef0e171469089c18f5233860ceaf9b168049cb9263fd7483c",
        "6fc8009faa2f00c1c1dfce59feea9b0745eb260a7dd11bee65c8e20843da6eab",
    ),
    "convnext_base": OfficialWeights(
        "convnext_base",
        "52cbb006d3dadd03f6e095a8ca1aca47aecdd75acb4bc74bce1f5c695d0086e6",
        "40a20c5548a5e9202f69735ecc06c990e6b7c9d2de39f0361e27baeb24cb7c45",
    ),
    "convnext_large": OfficialWeights(
        "convnext_large",
        "070c5ed9ed289581e477741d3b34beffa920db8cf590899d6d2c67fba2a198a6",
        "96f02b6f0753d4f543261bc9d09bed650f24dd6bc02ddde3066135b63d23a1cd",
    ),
}

PROBE_TIMEOUT_S = 5.0


# ----------------------------------------------------------------------------- download / cache
def cache_dir() -> Path:
    """Root of the weights cache (Keras' own by default, so downloads are shared with it)."""
    return Path(os.environ.get("ZOO_WEIGHTS_DIR") or os.environ.get("KERAS_HOME") or Path.home() / ".keras")


def probe(url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None if ``url`` answers within ``timeout`` seconds, else why not.

    Runs in a daemon thread joined with a timeout because DNS resolution ignores socket
    timeouts; a stuck lookup is abandoned rather than waited for. Honours proxy settings.
    """
    result: list[str | None] = ["timed out"]

    def _try() -> None:
        try:
            req = urllib.request.Request(url, method="HEAD")
            with urllib.request.urlopen(req, timeout=timeout):
                result[0] = None
        except urllib.error.HTTPError as e:  # the server answered: the network works
            result[0] = None if e.code < 500 else f"HTTP {e.code}"
        except Exception as e:  # noqa: BLE001 - any failure means "not reachable"
            result[0] = f"{type(e).__name__}: {e}"

    t = threading.Thread(target=_try, daemon=True, name="zoo-weights-probe")
    t.start()
    t.join(timeout + 0.5)
    return result[0]


def fetch(
    file_name: str, origin: str, sha256: str, *, root: Path | None = None, timeout: float = PROBE_TIMEOUT_S
) -> Path:
    """Return the verified local copy of ``origin`` (``<root>/models/<file_name>``), downloading if needed."""
    import keras

    root = Path(root) if root is not None else cache_dir()
    target = root / "models" / file_name
    if target.is_file():
        if sha256_file(target) == sha256:
            return target
        log.warning("cached %s does not match its sha256; downloading it again", target)
    why = probe(origin, timeout)
    if why is not None:
        raise ZooError(
            f"cannot download {file_name} from {origin} ({why}); offline? Copy the file (sha256 {sha256}) to {target} "
            f"or pass weights=PATH to a local .h5/.weights.h5/.keras file"
        )
    try:
        path = keras.utils.get_file(
            file_name, origin, file_hash=sha256, hash_algorithm="sha256", cache_dir=str(root), cache_subdir="models"
        )
    except Exception as e:  # network / checksum failures are the user's to fix
        raise ZooError(f"downloading {origin} failed: {e}") from e
    path = Path(path)
    if sha256_file(path) != sha256:  # get_file checks too; never load an unverified file
        raise ZooError(f"{path} does not match the official sha256 {sha256}; delete it and retry")
    return path


def fetch_imagenet(weights_name: str, *, include_top: bool = False, root: Path | None = None) -> Path:
    """Local path of the official ImageNet-1k weights ``weights_name`` (e.g. ``convnext_tiny``)."""
    if weights_name not in OFFICIAL:
        raise ZooError(f"no official ImageNet weights for '{weights_name}'; available: {', '.join(OFFICIAL)}")
    file_name, sha = OFFICIAL[weights_name].file(include_top)
    return fetch(file_name, BASE_URL + file_name, sha, root=root)


# ----------------------------------------------------------------------------- legacy HDF5 reader
def _s(v) -> str:
    return v.decode("utf8") if isinstance(v, bytes) else str(v)


def read_legacy_h5(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
    """{layer name: [arrays in saved order]} for every layer with weights in a legacy Keras .h5.

    Accepts weights-only files (layer groups at the root) and full-model files (under
    ``model_weights``), as written by Keras 2 (the official files) or Keras 3's legacy writer.
    """
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ZooError(f"cannot read {path} as HDF5: {e}") from e
    with f:
        g = f["model_weights"] if "model_weights" in f else f
        if "layer_names" not in g.attrs:
            raise ZooError(f"{path} is not a legacy Keras weights file (no layer_names)")
        out: dict[str, list[np.ndarray]] = {}
        for layer in (_s(n) for n in g.attrs["layer_names"]):
            lg = g[layer]
            names = [_s(w) for w in lg.attrs.get("weight_names", [])]
            if names:
                out[layer] = [np.asarray(lg[w]) for w in names]
        return out


# ----------------------------------------------------------------------------- official -> ours
_BLOCK_SUBLAYERS = {
    "depthwise_conv": "dwconv",
    "layernorm": "norm",
    "pointwise_conv_1": "pw1",
    "pointwise_conv_2": "pw2",
    "layer_scale": "scale",
}
_RE_BLOCK = re.compile(
    r"_stage_(\d+)_block_(\d+)_(depthwise_conv|layernorm|pointwise_conv_1|pointwise_conv_2|layer_scale)$"
)
_RE_DOWN = re.compile(r"_downsampling_block_(\d+)$")


def map_official(groups: dict[str, list[np.ndarray]]) -> dict[str, list[np.ndarray]]:
    """Rename/reshape a keras.applications ConvNeXt weight dict to {our layer name: arrays}.

    The stem and downsampling layers are nested Sequentials in keras.applications, so their
    groups hold two layers' weights each ([conv kernel, bias, LN gamma, beta] for the stem,
    [LN gamma, beta, conv kernel, bias] for downsampling). The final LayerNorm is
    ``*_head_layernorm`` in files with the top and an auto-named ``layer_normalization*`` in
    ``_notop`` files; the 1000-class ``*_head_dense`` is dropped.
    """
    out: dict[str, list[np.ndarray]] = {}
    unknown: list[str] = []
    for name, arrays in groups.items():
        if m := _RE_BLOCK.search(name):
            stage, block, sub = int(m[1]), int(m[2]), m[3]
            if sub == "depthwise_conv":
                kernel, bias = arrays
                if kernel.ndim != 4 or kernel.shape[2] != 1:
                    raise ZooError(f"{name}: expected a grouped-conv kernel (k, k, 1, C), got {kernel.shape}")
                arrays = [np.transpose(kernel, (0, 1, 3, 2)), bias]  # (k,k,1,C) -> (k,k,C,1)
            out[f"stage{stage}_block{block}_{_BLOCK_SUBLAYERS[sub]}"] = list(arrays)
        elif m := _RE_DOWN.search(name):
            i = int(m[1])
            if len(arrays) != 4:
                raise ZooError(f"{name}: expected 4 arrays (LN gamma, beta, conv kernel, bias), got {len(arrays)}")
            out[f"downsample{i}_norm"] = list(arrays[:2])
            out[f"downsample{i}_conv"] = list(arrays[2:])
        elif name.endswith("_stem"):
            if len(arrays) != 4:
                raise ZooError(f"{name}: expected 4 arrays (conv kernel, bias, LN gamma, beta), got {len(arrays)}")
            out["stem_conv"] = list(arrays[:2])
            out["stem_norm"] = list(arrays[2:])
        elif name.endswith("_head_layernorm"):
            out["final_norm"] = list(arrays)
        elif name.endswith("_head_dense"):
            continue
        else:
            unknown.append(name)
    # _notop files: the one remaining (auto-named) LayerNorm, two vectors, is the final norm
    # (its width is checked against ours in assign()).
    norms = [
        n
        for n in unknown
        if len(groups[n]) == 2 and groups[n][0].ndim == 1 and groups[n][0].shape == groups[n][1].shape
    ]
    if "final_norm" not in out and len(norms) == 1:
        out["final_norm"] = list(groups[norms[0]])
        unknown.remove(norms[0])
    if unknown:
        raise ZooError(f"not a keras.applications ConvNeXt weights file: unexpected layers {unknown[:5]}")
    return out


def assign(backbone: keras.Model, mapped: dict[str, list[np.ndarray]], source: str) -> None:
    """Set every weighted backbone layer from ``mapped``; all-or-nothing, shapes checked first."""
    plan = []
    for layer in backbone.layers:
        if not layer.weights:
            continue
        if layer.name not in mapped:
            raise ZooError(f"{source} has no weights for backbone layer '{layer.name}' (different ConvNeXt size?)")
        arrays = mapped.pop(layer.name)
        want = [tuple(w.shape) for w in layer.weights]
        got = [tuple(a.shape) for a in arrays]
        if want != got:
            raise ZooError(
                f"{source}: layer '{layer.name}' expects shapes {want}, file has {got} (different ConvNeXt size?)"
            )
        plan.append((layer, arrays))
    if mapped:
        raise ZooError(
            f"{source} has weights for layers this member lacks: {sorted(mapped)[:5]} (different ConvNeXt size?)"
        )
    for layer, arrays in plan:
        layer.set_weights(arrays)


def load_official_h5(backbone: keras.Model, path: str | os.PathLike) -> None:
    """Load a keras.applications-format ConvNeXt ``.h5`` into our backbone."""
    assign(backbone, map_official(read_legacy_h5(path)), str(path))


# ----------------------------------------------------------------------------- entry point
def _load_keras_file(model: keras.Model, path: Path) -> None:
    """Copy the backbone of a saved zoo member (any number of classes) into ``model``'s."""
    import keras

    try:
        src = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as e:
        raise ZooError(f"cannot load {path}: {e}") from e
    try:
        src_bb = src.get_layer("backbone")
    except ValueError:
        raise ZooError(f"{path} has no 'backbone' layer; not a ConvNeXt zoo member") from None
    assign(
        model.get_layer("backbone"),
        {layer.name: [np.asarray(w) for w in layer.get_weights()] for layer in src_bb.layers if layer.weights},
        str(path),
    )


def load_pretrained(model: keras.Model, weights: str | os.PathLike, cfg: ConvNeXtConfig) -> None:
    """Apply ``weights``: "imagenet", a keras.applications ``.h5``, a ``.weights.h5`` or a ``.keras``."""
    backbone = model.get_layer("backbone")
    if str(weights) == "imagenet":
        if cfg.imagenet is None or cfg.stem_stride != 4 or cfg.kernel_size != 7:
            raise ZooError("weights='imagenet' exists only for convnext_tiny/small/base/large (official configs)")
        path = fetch_imagenet(cfg.imagenet)
        log.info("loading ImageNet-1k weights from %s", path)
        load_official_h5(backbone, path)
        return
    path = Path(weights)
    if not path.is_file():
        raise ZooError(f"weights must be None, 'imagenet' or an existing file; not found: {path}")
    name = path.name.lower()
    if name.endswith(".keras"):
        _load_keras_file(model, path)
    elif name.endswith(".weights.h5"):
        errors = []
        for target in (model, backbone):  # a whole member with the same head, or a backbone alone
            try:
                target.load_weights(path)
                return
            except Exception as e:  # noqa: BLE001
                errors.append(f"{target.name}: {e}")
        raise ZooError(f"cannot load {path} into this member or its backbone: {' | '.join(errors)}")
    elif name.endswith(".h5"):
        load_official_h5(backbone, path)
    else:
        raise ZooError(f"unsupported weights file {path}; expected .h5 (keras.applications), .weights.h5 or .keras")
