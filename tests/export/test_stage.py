"""The export stage of ``zoo run``: one export folder per artifact ``[export]`` asks for."""

from __future__ import annotations

import pytest

from zoo.artifacts import read_card
from zoo.errors import ZooError


def test_pipeline_stage(runs, dataset, tmp_path):
    """``export_stages`` with a stand-in pipeline context: one stage per member, complete export folders."""
    from types import SimpleNamespace

    from export.stage import export_stages
    from zoo.layout import RunLayout
    from zoo.pipeline import Stage

    _, members = runs
    cfg = SimpleNamespace(
        export=SimpleNamespace(
            enabled=True,
            opset=17,
            quantize=["int8"],
            include=["members", "ensembles"],
            calibration_size=32,
            parity_images=8,
        ),
        members=[SimpleNamespace(run_name=m.name) for m in members],
        ensemble=SimpleNamespace(enabled=False, methods=[]),
        distill=SimpleNamespace(enabled=False),
    )

    class Ctx(RunLayout):  # the pipeline context's layout, with the members where the fixture trained them
        def member_dir(self, name):
            return members[0].parent / name

        def dataset_at(self, size):  # the stage asks for the data at each source's own size
            assert size == dataset.image_size
            return dataset

    ctx = Ctx(tmp_path)
    ctx.cfg = cfg
    stages = export_stages(ctx, Stage)
    assert [s.outputs[0] for s in stages] == [tmp_path / "exports" / "member-m1", tmp_path / "exports" / "member-m2"]
    stages[0].run()
    card = read_card(stages[0].outputs[0])
    assert set(card["parity"]) == {"fp32", "int8"} and card["parity"]["fp32"]["images"] == 8
    cfg.export.enabled = False
    assert export_stages(ctx, Stage) == []
    cfg.export.enabled, cfg.export.quantize = True, ["int4"]
    with pytest.raises(ZooError, match="int4"):
        export_stages(ctx, Stage)
