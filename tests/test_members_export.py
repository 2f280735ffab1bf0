"""Every member goes through the whole chain: one tiny epoch → run folder → reload → ONNX with parity.

The official ConvNeXt-S/B/L configs (49–196M parameters) are the same builder and blocks as
ConvNeXt-T with more and wider blocks; converting them would add minutes and gigabytes to the
suite, so the chain runs on every member up to ConvNeXt-T's size and the larger ones are
checked to be that same architecture.
"""

from __future__ import annotations

import numpy as np
import pytest

from zoo.artifacts import read_card
from zoo.registry import get_spec, list_models
from zoo.runs import load_model
from zoo.train import train

SMALL_ENOUGH = ["custom_cnn", "mobilenet_v3", "mobilenet_v3_tiny", "convnext_zepto", "convnext_atto", "convnext_tiny"]


def test_every_member_is_covered_here():
    big = sorted(set(list_models()) - set(SMALL_ENOUGH))
    assert big == ["convnext_base", "convnext_large", "convnext_small"]
    for name in big:  # same builder, same layers as convnext_tiny
        assert get_spec(name).builder.__module__ == get_spec("convnext_tiny").builder.__module__


@pytest.mark.parametrize("member", SMALL_ENOUGH)
def test_member_trains_saves_reloads_and_exports(member, tmp_path):
    from export.convert import export_model
    from zoo.data import load_dataset

    data = load_dataset("synthetic:48", 32, val_fraction=0.25, test_fraction=0.0)
    run = train(
        member,
        data,
        tmp_path / member,
        image_size=32,
        epochs=1,
        batch_size=16,
        tensorboard=False,
        evaluate_splits=("val",),
    )
    card = read_card(run)
    assert card["member"] == member and card["training"]["epochs_run"] == 1
    model = load_model(run)
    x = data.split("val").images[:4].astype(np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), np.load(run / "probs" / "val.npy")[:4], atol=1e-5)
    out = export_model(run, tmp_path / f"{member}-onnx", data=data, limit=8)
    exported = read_card(out)
    parity = exported["variants"]["fp32"]["parity"]
    assert exported["kind"] == "export" and parity["passed"] is True
    assert parity["max_abs_diff"] <= 1e-4 and parity["top1_agreement"] >= 0.999
