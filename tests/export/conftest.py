"""Fixtures shared by the export tests: a tiny dataset and two untrained members (nothing trained)."""

from __future__ import annotations

import pytest

from tests.helpers import EXPORT_SIZE, keras_member_run


@pytest.fixture(scope="package")
def dataset():
    from zoo.data import load_dataset

    return load_dataset("synthetic:160", EXPORT_SIZE)


@pytest.fixture(scope="package")
def runs(tmp_path_factory, dataset):
    root = tmp_path_factory.mktemp("zoo")
    return root, [keras_member_run(root / "m1", dataset, 1), keras_member_run(root / "m2", dataset, 2)]
