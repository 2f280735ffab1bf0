"""``zoo data preview``: a montage of what a policy does — one row per class, original + N augmented.

Each row's image is repeated ``n_aug`` times in one batch together with one image of every
class, so label-mixing ops (CutMix/MixUp) have partners to mix with, exactly as in training;
captions show how much of the row's class each augmented sample's label still carries.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import ZooError


def sample_per_class(source, image_size: int, seed: int = 0, split: str = "train") -> tuple[list[str], np.ndarray]:
    """One image per class (``split`` preferred), decoded at ``image_size``; cheap for folders."""
    from zoo.curate.scan import scan
    from zoo.data.images import BadImage, decode, resize_array

    sc = scan(source, image_size)
    rng = np.random.default_rng(seed)
    names, images = [], []
    for cls in sc.class_names:
        recs = [r for r in sc.records if r.label == cls and r.split == split] or [
            r for r in sc.records if r.label == cls
        ]
        for k in rng.permutation(len(recs)):
            rec = recs[k]
            if rec.path is None:
                images.append(resize_array(sc.arrays[rec.split][rec.index : rec.index + 1], image_size)[0])
                break
            try:
                from zoo.safeio import MAX_IMAGE_BYTES, read_bytes

                images.append(decode(read_bytes(rec.path, MAX_IMAGE_BYTES), image_size, rec.path))
                break
            except (OSError, BadImage):
                continue
        else:
            continue
        names.append(cls)
    if not names:
        raise ZooError(f"{sc.source}: no readable images to preview")
    return names, np.stack(images)


def preview(
    source,
    spec: Any,
    out: str | os.PathLike,
    *,
    image_size: int = 64,
    n_aug: int = 6,
    seed: int = 0,
    force: bool = False,
) -> Path:
    """Write the montage PNG to ``out`` (a .png path, or a folder that gets ``augment_preview.png``).

    An existing file there is replaced only with ``force`` (:func:`zoo.ownership.check_file_target`),
    checked before any work: a user's picture is never overwritten by accident.
    """
    from zoo.augment import build_policy
    from zoo.curate.report import montage
    from zoo.ownership import check_file_target

    if not 1 <= n_aug <= 16:
        raise ZooError(f"preview shows 1..16 augmented samples per class, got {n_aug}")
    path = Path(out)
    if path.suffix.lower() != ".png":
        path = path / "augment_preview.png"
    check_file_target(path, force=force)
    names, images = sample_per_class(source, image_size, seed)
    c = len(names)
    policy = build_policy(spec, num_classes=c, seed=seed)
    eye = np.eye(c, dtype=np.float32)
    rows = []
    for k, name in enumerate(names):
        batch = np.concatenate([np.repeat(images[k : k + 1], n_aug, 0), images]).astype(np.float32)
        labels = np.concatenate([np.repeat(eye[k : k + 1], n_aug, 0), eye])
        aug, soft = policy(batch, labels)
        aug, soft = np.asarray(aug)[:n_aug], np.asarray(soft)[:n_aug]
        items = [(images[k], "original")]
        for i in range(n_aug):
            w = float(soft[i, k])
            items.append((np.clip(np.rint(aug[i]), 0, 255).astype(np.uint8), f"y[{name}]={w:.2f}" if w < 0.995 else ""))
        rows.append((name, items))
    return montage(path, rows, title=f"augment: {policy.spec} (seed {seed})")
