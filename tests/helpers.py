"""Helpers the tests share: paths, tiny model settings, files and run folders made without training.

Fixtures live in ``conftest.py`` files (shared ones in ``tests/conftest.py``); plain functions
and constants live here so test modules import them by name (``from tests.helpers import …``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zoo.artifacts import card_sha256, read_card, write_card, write_json, write_probs

REPO = Path(__file__).resolve().parents[1]
PBC = REPO.parent / "shared" / "data" / "pbc128"

# Small enough that one epoch takes a second or two on a CPU.
TINY_CNN = {"widths": (8, 16), "depths": (1, 1), "stem_width": 8}


def write_images(folder: Path, n: int, size: int = 20, seed: int = 0, fmt: str = "png") -> list[Path]:
    """``n`` random RGB images in ``folder`` (made by PIL, as users' files would be)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        p = folder / f"img_{seed}_{i}.{fmt}"
        Image.fromarray(rng.integers(0, 255, (size, size + 3, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def one_line_error(capsys, argv: list[str], *contains: str) -> str:
    """Run ``zoo argv``; it must exit 2 with exactly one ``zoo: error:`` line holding every ``contains``."""
    from zoo.cli import main

    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zoo: error: "), captured.err
    assert "Traceback" not in captured.err + captured.out
    for part in contains:
        assert part in lines[0], lines[0]
    return lines[0]


# ----------------------------------------------------------------------------- run folders without training
C4 = ["a", "b", "c", "d"]
INPUT = {"image_size": 32, "channels": 3, "range": [0, 255], "color": "RGB", "preprocessing": "inside model"}


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def member_probs(labels, strength, c=4, seed=0, noise=1.0):
    """Probabilities whose true-class logit is raised by ``strength`` (0 = uninformative)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, noise, (len(labels), c))
    z[np.arange(len(labels)), labels] += strength
    return softmax(z).astype(np.float32)


def make_run(
    folder: Path, splits: dict, classes=C4, input_spec=INPUT, fingerprint="abc", model=None, name=None
) -> Path:
    """A member run folder: stored probs per split (+ model.keras when given), card last."""
    folder.mkdir(parents=True, exist_ok=True)
    if model is not None:
        model.save(folder / "model.keras")
    for split, (p, y) in splits.items():
        write_probs(folder, split, np.asarray(p, np.float32), np.asarray(y, np.int64))
    write_card(
        folder,
        {
            "kind": "member",
            "name": name or folder.name,
            "member": "custom_cnn",
            "params": {},
            "classes": list(classes),
            "input": dict(input_spec),
            "data": {"source": "synthetic:64", "fingerprint": fingerprint},
            "metrics": {},
        },
    )
    return folder


# ----------------------------------------------------------------------------- exports (tests/export)
EXPORT_SIZE = 32  # the tiny members that export tests convert take 32 px images


def train_snapshots(out: Path, dataset, epochs: int = 4, **kw) -> Path:
    """A tiny ``custom_cnn`` (24 px) trained as two snapshot cycles (``zoo.train`` ``snapshots=2``)."""
    from zoo.train import train

    return train(
        "custom_cnn",
        dataset,
        out,
        image_size=24,
        params=TINY_CNN,
        epochs=epochs,
        snapshots=2,
        batch_size=32,
        tensorboard=False,
        patience=10,
        **kw,
    )


def keras_member_run(folder: Path, dataset, seed: int) -> Path:
    """A member run folder around an untrained tiny custom_cnn with a confident head (nothing trained)."""
    import keras

    from zoo.registry import create_model

    keras.utils.set_random_seed(seed)
    model = create_model("custom_cnn", dataset.num_classes, EXPORT_SIZE, **TINY_CNN)
    dense = model.get_layer("probs")
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel * 40.0, bias])  # confident, varied outputs from an untrained net
    folder.mkdir(parents=True)
    model.save(folder / "model.keras")
    val = dataset.split("val")
    write_probs(folder, "val", model.predict(val.images.astype(np.float32), verbose=0), val.labels)
    write_card(
        folder,
        {
            "kind": "member",
            "name": folder.name,
            "member": "custom_cnn",
            "params": TINY_CNN,
            "classes": list(dataset.class_names),
            "input": {
                "image_size": EXPORT_SIZE,
                "channels": 3,
                "range": [0, 255],
                "color": "RGB",
                "preprocessing": "inside model",
            },
            "data": {**dataset.summary(), "seed": 0},
            "metrics": {},
        },
    )
    return folder


def ensemble_folder(folder: Path, members: list[Path], spec: dict) -> Path:
    """An ensemble folder in the ``ensemble`` package's format (ensemble.json + card)."""
    cards = [read_card(m) for m in members]
    folder.mkdir(parents=True)
    write_json(
        folder / "ensemble.json",
        {
            "format": 1,
            **spec,
            "members": [
                {
                    "name": c["name"],
                    "member": c["member"],
                    "path": f"../{m.name}",
                    "abs_path": str(m),
                    "card_sha256": card_sha256(m),
                }
                for m, c in zip(members, cards)
            ],
            "classes": cards[0]["classes"],
            "input": cards[0]["input"],
        },
    )
    write_card(
        folder,
        {
            "kind": "ensemble",
            "name": folder.name,
            "method": spec["method"],
            "classes": cards[0]["classes"],
            "input": cards[0]["input"],
            "data": cards[0]["data"],
            "metrics": {},
        },
    )
    return folder


def keras_probs(run: Path, images: np.ndarray) -> np.ndarray:
    from zoo.runs import load_model

    return load_model(run).predict(np.asarray(images, np.float32), verbose=0)


def onnx_probs(path: Path, images: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["images"] and len(sess.get_outputs()) == 1
    return sess.run(None, {"images": np.asarray(images, np.float32)})[0]


SMEAR_NUCLEUS = (5, 14)  # smear_fields: class 0 has a small central cell, class 1 a large one


def smear_fields(n: int, size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Smear-like fields and their classes, for the magnification ruler: pale background, red-cell discs
    of radius 5-7 px, a violet central cell whose radius is the class (alternating)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.empty((n, size, size, 3), np.float32)
    labels = np.arange(n) % 2
    for i in range(n):
        img = np.empty((size, size, 3), np.float32)
        img[:] = (230, 215, 210)
        for _ in range(12):
            cy, cx, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(5, 7)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = (205, 140, 150)
        img[(yy - size / 2) ** 2 + (xx - size / 2) ** 2 < SMEAR_NUCLEUS[labels[i]] ** 2] = (110, 60, 150)
        out[i] = img + rng.normal(0, 3, img.shape)
    return np.clip(out, 0, 255).astype(np.uint8), labels
