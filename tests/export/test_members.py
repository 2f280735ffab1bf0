"""Every member goes through the whole chain: one tiny epoch → run folder → reload → ONNX with parity.

A member that is another row of a variants table (the same builder and blocks, only more or
fewer, wider or narrower ones) is covered by its twin: ConvNeXt-zepto/T/S/B/L by ConvNeXt-atto
(zepto's stride-2 stem is the same ``stem_conv`` layer with another stride, and a tiny zepto is
exported with parity in ``tests/zoo/models/test_convnext.py``), MobileNetV3 by its 0.4M student.
Converting the big twins would add minutes and gigabytes to the suite (ConvNeXt-T alone took
87 s; zepto's one-epoch chain 53 s) and exercise no layer the small ones do not.
"""

from __future__ import annotations

import numpy as np
import pytest

from zoo.artifacts import read_card
from zoo.registry import get_spec, list_models
from zoo.runs import load_model
from zoo.train import train

CHAIN = ["custom_cnn", "mobilenet_v3_tiny", "convnext_atto"]
TWIN = {
    "convnext_zepto": "convnext_atto",
    "convnext_tiny": "convnext_atto",
    "convnext_small": "convnext_atto",
    "convnext_base": "convnext_atto",
    "convnext_large": "convnext_atto",
    "mobilenet_v3": "mobilenet_v3_tiny",
}


def test_every_member_is_covered_here():
    assert set(CHAIN) | set(TWIN) == set(list_models())
    for name, twin in TWIN.items():  # same builder module, same family: only the numbers differ
        assert get_spec(name).builder.__module__ == get_spec(twin).builder.__module__
        assert get_spec(name).family == get_spec(twin).family


@pytest.mark.parametrize("member", CHAIN)
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
