"""A deterministic generator of blood-cell-like smears for the 8 PBC classes.

Why: the quickstart and the tests must run offline with no data, and a model zoo needs a
task that is learnable but not trivial to show that training, ensembling and export work.
Each image is a stained field: red cells in the background, one central cell whose size,
nucleus (round, kidney, bi- or multi-lobed, dense or open), cytoplasm colour and granules
(fine, coarse eosinophilic, dark basophilic) follow the class, under per-image stain, light,
blur and noise variation. Size ranges and nucleus shapes overlap between classes on purpose
(e.g. 2-lobed neutrophils vs eosinophils, large lymphocytes vs immature granulocytes).

Image ``i`` depends only on ``(seed, i)``, so a set is identical at every size and on every
machine; class frequencies follow PBC's imbalance.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from zoo.data.dataset import Dataset, Fingerprint, Split, stratified_origin
from zoo.data.npz import BLOOD_CLASSES
from zoo.data.splitting import stratified_split

GENERATOR_VERSION = 1
# PBC class counts (Acevedo et al. 2020) set the imbalance.
PBC_COUNTS = np.array([1218, 3117, 1551, 2895, 1214, 1420, 3329, 2348], dtype=float)

# Per class: cell radius range, nucleus kind, cytoplasm RGB, granules (kind, density).
_CLASSES = {
    "basophil": dict(r=(0.30, 0.40), nucleus="lobed2", cyto=(190, 170, 205), gran=("dark", 0.30)),
    "eosinophil": dict(r=(0.36, 0.46), nucleus="lobed2", cyto=(235, 175, 150), gran=("orange", 0.35)),
    "erythroblast": dict(r=(0.24, 0.34), nucleus="dense", cyto=(200, 150, 175), gran=None),
    "ig": dict(r=(0.36, 0.48), nucleus="open", cyto=(175, 170, 210), gran=("fine", 0.05)),
    "lymphocyte": dict(r=(0.24, 0.34), nucleus="round", cyto=(165, 180, 225), gran=None),
    "monocyte": dict(r=(0.40, 0.52), nucleus="kidney", cyto=(185, 180, 205), gran=("vacuole", 0.04)),
    "neutrophil": dict(r=(0.34, 0.44), nucleus="lobed", cyto=(225, 200, 215), gran=("fine", 0.10)),
    "platelet": dict(r=(0.0, 0.0), nucleus="platelet", cyto=(0, 0, 0), gran=None),
}
NUCLEUS_RGB = np.array([95, 50, 135], dtype=float)


def _disk(xx, yy, cx, cy, r):
    return ((xx - cx) ** 2 + (yy - cy) ** 2) <= r * r


def _soft(mask, sigma):
    return np.clip(ndimage.gaussian_filter(mask.astype(np.float32), sigma), 0, 1)


def render(label: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """One ``(size, size, 3) uint8`` image of class ``label``."""
    name = BLOOD_CLASSES[label]
    spec = _CLASSES[name]
    lin = np.linspace(-1, 1, size, dtype=np.float32)
    xx, yy = np.meshgrid(lin, lin)
    px = 2.0 / size  # one pixel in normalised units
    sig = max(0.6, 0.012 / px)

    background = np.array([238, 222, 214], float) + rng.normal(0, 6, 3)
    img = np.ones((size, size, 3), np.float32) * background
    # Red cells: pink discs with a pale centre, anywhere, under the central cell.
    for _ in range(rng.integers(4, 10)):
        cx, cy = rng.uniform(-1.1, 1.1, 2)
        r = rng.uniform(0.16, 0.24)
        disc = _soft(_disk(xx, yy, cx, cy, r), sig)
        pale = _soft(_disk(xx, yy, cx, cy, r * rng.uniform(0.3, 0.5)), sig * 2)
        rbc = np.array([222, 150, 150], float) + rng.normal(0, 8, 3)
        alpha = (disc * (1 - 0.45 * pale))[..., None]
        img = img * (1 - alpha) + rbc * alpha

    cx, cy = rng.normal(0, 0.06, 2)
    if spec["nucleus"] == "platelet":
        for _ in range(rng.integers(2, 7)):
            ox, oy = rng.normal(0, 0.12, 2)
            r = rng.uniform(0.035, 0.08)
            frag = _soft(_disk(xx, yy, cx + ox, cy + oy, r), sig)
            colour = np.array([150, 110, 175], float) + rng.normal(0, 10, 3)
            img = img * (1 - frag[..., None]) + colour * frag[..., None]
    else:
        r = rng.uniform(*spec["r"])
        cell = _soft(_disk(xx, yy, cx, cy, r), sig)
        cyto = np.array(spec["cyto"], float) + rng.normal(0, 10, 3)
        img = img * (1 - cell[..., None]) + cyto * cell[..., None]
        nucleus, density = _nucleus(spec["nucleus"], xx, yy, cx, cy, r, rng)
        nucleus = _soft(nucleus, sig) * cell
        ncol = NUCLEUS_RGB * rng.uniform(0.85, 1.15) + (255 - NUCLEUS_RGB) * (1 - density)
        img = img * (1 - nucleus[..., None]) + ncol * nucleus[..., None]
        if spec["gran"]:
            img = _granules(img, spec["gran"], cell, nucleus, size, rng)

    # Stain and light: per-channel gain (hue/saturation drift), brightness, blur, noise.
    img = img * rng.uniform(0.88, 1.12, 3) * rng.uniform(0.9, 1.08)
    img = ndimage.gaussian_filter(img, (rng.uniform(0.0, 0.9) * size / 64, rng.uniform(0.0, 0.9) * size / 64, 0))
    img = img + rng.normal(0, rng.uniform(2, 8), img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _nucleus(kind, xx, yy, cx, cy, r, rng):
    """Mask and density (1 = dark, condensed chromatin) of the nucleus."""
    angle = rng.uniform(0, 2 * np.pi)
    ux, uy = np.cos(angle), np.sin(angle)
    if kind == "round":
        return _disk(
            xx, yy, cx + rng.normal(0, 0.03), cy + rng.normal(0, 0.03), r * rng.uniform(0.72, 0.86)
        ), rng.uniform(0.85, 1.0)
    if kind == "dense":
        off = r * rng.uniform(0.0, 0.25)
        return _disk(xx, yy, cx + off * ux, cy + off * uy, r * rng.uniform(0.5, 0.66)), 1.1
    if kind == "open":
        rx, ry = r * rng.uniform(0.6, 0.75), r * rng.uniform(0.5, 0.65)
        dx, dy = xx - cx - 0.15 * r * ux, yy - cy - 0.15 * r * uy
        a = dx * ux + dy * uy
        b = -dx * uy + dy * ux
        return (a / rx) ** 2 + (b / ry) ** 2 <= 1, rng.uniform(0.55, 0.75)
    if kind == "kidney":
        big = _disk(xx, yy, cx, cy, r * rng.uniform(0.55, 0.68))
        bite = _disk(xx, yy, cx + r * 0.55 * ux, cy + r * 0.55 * uy, r * rng.uniform(0.3, 0.42))
        return big & ~bite, rng.uniform(0.6, 0.8)
    # Lobed nuclei: lobes on an arc; 2 for eosinophils/basophils, 2–5 for neutrophils.
    lobes = 2 if kind == "lobed2" else int(rng.choice([2, 3, 3, 4, 4, 5]))
    spread = rng.uniform(0.8, 1.6)
    mask = np.zeros_like(xx, dtype=bool)
    lobe_r = r * rng.uniform(0.22, 0.3)
    for k in range(lobes):
        t = angle + spread * (k - (lobes - 1) / 2) / max(1, lobes - 1) * 2
        lx, ly = cx + 0.45 * r * np.cos(t), cy + 0.45 * r * np.sin(t)
        mask |= _disk(xx, yy, lx, ly, lobe_r)
    return mask, rng.uniform(0.85, 1.0)


def _granules(img, gran, cell, nucleus, size, rng):
    kind, density = gran
    cover = cell * (1 - nucleus) if kind != "dark" else cell
    dots = (rng.random(cell.shape) < density) & (cover > 0.5)
    grain = 1.0 if kind in ("fine", "vacuole") else 1.6
    dots = _soft(ndimage.binary_dilation(dots, iterations=max(0, int(size / 96 * grain))), 0.5)
    colour = {
        "dark": (70, 40, 100),
        "orange": (220, 110, 70),
        "fine": (190, 140, 175),
        "vacuole": (240, 235, 240),
    }[kind]
    colour = np.array(colour, float) + rng.normal(0, 8, 3)
    alpha = (dots * (0.9 if kind in ("dark", "orange") else 0.5))[..., None]
    return img * (1 - alpha) + colour * alpha


def class_labels(n: int, seed: int) -> np.ndarray:
    """Labels for ``n`` images: every class present, then drawn with PBC frequencies."""
    rng = np.random.default_rng([seed, 10_007])
    base = np.arange(len(BLOOD_CLASSES)).repeat(max(1, min(3, n // 8)))[:n]
    rest = rng.choice(len(BLOOD_CLASSES), size=n - len(base), p=PBC_COUNTS / PBC_COUNTS.sum())
    return rng.permutation(np.concatenate([base, rest]).astype(np.int64))


def load_synthetic(
    image_size: int, *, n: int = 1200, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2
) -> Dataset:
    labels = class_labels(n, seed)
    from zoo.progress import progress

    images = np.stack(
        [
            render(int(y), image_size, np.random.default_rng([seed, i]))
            for i, y in progress(enumerate(labels), total=n, desc="synthetic")
        ]
    )
    fp = Fingerprint()
    fp.add("synthetic", GENERATOR_VERSION, seed, n, labels.tobytes())
    origin = stratified_origin(seed, val_fraction, test_fraction)
    splits = stratified_split(Split(images, labels), seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)
    return Dataset(f"synthetic:{n}", list(BLOOD_CLASSES), splits, fp.hexdigest(), image_size, origin)
