"""The images an export is checked and calibrated on (``export.reference_data``), without converting anything."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pytest

from export.reference_data import calibration_images, load_data, parity_data
from export.sources import open_source
from zoo.errors import ZooError


@pytest.fixture(scope="module")
def source(runs):
    _, (m1, _) = runs
    return open_source(m1)


def _rows(images: np.ndarray) -> set[bytes]:
    return {im.tobytes() for im in images}


def test_parity_is_a_seeded_subset_of_val_and_calibration_comes_from_train(source, dataset):
    pdata = parity_data(source, data=dataset, limit=10)
    again = parity_data(source, data=dataset, limit=10)
    val, train = dataset.split("val"), dataset.split("train")
    assert len(pdata.images) == 10 and np.array_equal(pdata.images, again.images)
    assert _rows(pdata.images) <= _rows(val.images)
    assert pdata.description == {
        "source": dataset.source,
        "split": "val",
        "fingerprint": dataset.fingerprint,
        "images": 10,
        "of": len(val),
    }
    for image, label in zip(pdata.images, pdata.labels, strict=True):  # labels travel with their images
        (i,) = np.flatnonzero((val.images == image).all(axis=(1, 2, 3)))[:1]
        assert val.labels[i] == label

    calib, desc = calibration_images(source, calibration_data=dataset, size=16, seed=3)
    assert len(calib) == 16 and desc == {"source": dataset.source, "split": "train", "images": 16, "seed": 3}
    assert _rows(calib) <= _rows(train.images)
    assert not np.array_equal(calib, calibration_images(source, calibration_data=dataset, size=16, seed=4)[0])


def test_without_a_train_split_calibration_warns_and_uses_val(source, dataset, caplog):
    only_val = replace(dataset, splits={"val": dataset.split("val")})
    with caplog.at_level(logging.WARNING, logger="export.reference_data"):
        calib, desc = calibration_images(source, calibration_data=only_val, size=8)
    assert desc["split"] == "val" and _rows(calib) <= _rows(dataset.split("val").images)
    assert "no train split" in caplog.text


def test_arrays_of_any_size_are_resized_and_labels_must_match(source):
    images = np.random.default_rng(0).integers(0, 256, (6, 50, 50, 3), dtype=np.uint8)
    pdata = parity_data(source, images=images, labels=np.arange(6) % 2, limit=4)
    assert pdata.images.shape == (4, source.image_size, source.image_size, 3)
    assert pdata.description == {"source": "array", "images": 4}
    with pytest.raises(ZooError, match="6 parity images but 5 labels"):
        parity_data(source, images=images, labels=np.zeros(5))


def test_data_that_disagrees_with_the_model_is_refused(source, dataset):
    renamed = replace(dataset, class_names=[f"other{i}" for i in range(dataset.num_classes)])
    with pytest.raises(ZooError, match="has classes"):
        load_data(renamed, source)
    with pytest.raises(ZooError, match="px but the model takes"):
        load_data(replace(dataset, image_size=dataset.image_size * 2), source)
