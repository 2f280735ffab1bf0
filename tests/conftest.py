"""Shared fixtures: tiny data and models, quiet logs, and the optional real PBC data (helpers: tests/helpers.py)."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("ZOO_PROGRESS", "0")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import sys

# The bad-input corpus lives in benchmarks/corpus.py, shared by tests/zoo/commands/test_bad_inputs.py and
# benchmarks/reliability.py: tests may import benchmark helpers, benchmarks never import tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import pytest

from tests.helpers import PBC, TINY_CNN


@pytest.fixture(scope="session")
def pbc_root() -> Path:
    if not (PBC / "train").is_dir():
        pytest.skip("real PBC data (../shared/data/pbc128) is not available")
    return PBC


@pytest.fixture(scope="session")
def tiny_params() -> dict:
    return dict(TINY_CNN)


@pytest.fixture(scope="session")
def synthetic_small():
    from zoo.data import load_dataset

    return load_dataset("synthetic:96", 24)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, synthetic_small):
    """One tiny member trained for two epochs, shared by tests that only read it."""
    from zoo.train import train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    return train(
        "custom_cnn", synthetic_small, out, image_size=24, params=TINY_CNN, epochs=2, batch_size=32, tensorboard=False
    )


@pytest.fixture(scope="session")
def snapshot_training(tmp_path_factory, synthetic_small):
    """A tiny ``custom_cnn`` trained as two snapshot cycles of two epochs, and the warnings its training raised.

    Shared by the snapshot tests (training, interruption, ensembles) so it is trained once per session.
    """
    import warnings

    from tests.helpers import train_snapshots

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = train_snapshots(tmp_path_factory.mktemp("snap") / "run", synthetic_small)
        warnings.warn("the capture works", stacklevel=1)  # so a test can tell "no such warning" from "nothing recorded"
    return run, [str(w.message) for w in caught]


@pytest.fixture(scope="session")
def snapshot_run(snapshot_training):
    return snapshot_training[0]


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory):
    """One tiny `zoo run` with every stage: 2 members at 20 and 24 px (the second trained with stain
    augmentation), shifted eval, the shift suite (two families, plain and magnification-adapted) on every
    model, vote ensemble, student, export, benchmark.

    Returns ``(config, report/summary.md)``; shared by the pipeline, report, shift-suite, bench and
    browser tests so the pipeline runs once per session.
    """
    from zoo import config, pipeline

    tiny = {"widths": [8, 16], "depths": [1, 1], "stem_width": 8}
    cfg = config.parse(
        {
            "name": "tiny",
            "output": str(tmp_path_factory.mktemp("pipeline") / "out"),
            "data": {"source": "synthetic:240", "image_size": 20},
            "train": {"epochs": 1, "batch_size": 32, "tensorboard": False},
            "members": [
                {"member": "custom_cnn", "params": tiny},
                # another input size: every stage must give each artifact the data at its own size
                {
                    "member": "custom_cnn",
                    "name": "second",
                    "image_size": 24,
                    "params": tiny,
                    "train": {"seed": 1, "augment": "stain"},  # in-family for the suite's colour shifts
                },
            ],
            "evaluate": {
                "shifted": 0.5,
                "shift_families": ["colour", "geometry"],
                "shift_max_images": 16,
                "shift_adapt_scale": True,
            },
            "ensemble": {"enabled": True, "methods": ["vote"], "calibrate": False},
            "distill": {"enabled": True, "teacher": "vote", "params": tiny, "epochs": 1},
            "export": {"enabled": True, "quantize": [], "include": ["student"], "parity_images": 32},
            "bench": {
                "enabled": True,
                "batch_sizes": [2],
                "iterations": 1,
                "warmup": 0,
                "engines": ["ort"],
                "providers": ["cpu"],
            },
        }
    )
    return cfg, pipeline.run(cfg)
