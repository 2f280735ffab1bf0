import json

from zoo import config, pipeline
from zoo.artifacts import read_card

TINY = {"widths": [8, 16], "depths": [1, 1], "stem_width": 8}


def tiny_config(tmp_path, **sections):
    data = {
        "name": "tiny",
        "output": str(tmp_path / "out"),
        "data": {"source": "synthetic:96", "image_size": 20},
        "train": {"epochs": 1, "batch_size": 32, "tensorboard": False},
        "members": [{"member": "custom_cnn", "params": TINY}, {"member": "custom_cnn", "name": "second", "params": TINY, "train": {"seed": 1}}],
        "evaluate": {"shifted": None, "shift_suite": False},
        "ensemble": {"enabled": False},
    }
    data.update(sections)
    return config.parse(data)


def test_pipeline_runs_then_skips_complete_stages(tmp_path, caplog):
    cfg = tiny_config(tmp_path)
    report = pipeline.run(cfg)
    out = tmp_path / "out"
    for name in ("custom_cnn", "second"):
        card = read_card(out / "members" / name)
        assert card["kind"] == "member" and "val" in card["metrics"]
    rows = json.loads((out / "report" / "summary.json").read_text())
    assert {r["name"] for r in rows} == {"custom_cnn", "second"}
    assert "| custom_cnn | member |" in report.read_text()
    assert (out / "report" / "summary.png").is_file()
    before = (out / "members" / "second" / "card.json").read_bytes()
    caplog.clear()
    with caplog.at_level("INFO"):
        pipeline.run(cfg)
    assert sum("complete, skipped" in r.message for r in caplog.records) == 2
    assert (out / "members" / "second" / "card.json").read_bytes() == before


def test_pipeline_restarts_an_incomplete_stage(tmp_path):
    cfg = tiny_config(tmp_path, members=[{"member": "custom_cnn", "params": TINY}])
    half = tmp_path / "out" / "members" / "custom_cnn"
    half.mkdir(parents=True)
    (half / "model.keras").write_bytes(b"left over from a crash before the first checkpoint")
    pipeline.run(cfg)
    assert read_card(half)["kind"] == "member"
