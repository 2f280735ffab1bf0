"""`zoo bench`: every column in every result file, skipped (not failed) providers, the Pareto PNG, MAC counting."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory, trained_run, synthetic_small):
    from export.convert import export_model

    out = tmp_path_factory.mktemp("bench") / "export"
    return export_model(trained_run, out, quantize="int8", data=synthetic_small, calibration_size=32, limit=32)


def test_bench_export_writes_every_column_and_skips_missing_providers(tiny_export, synthetic_small, tmp_path):
    from export.bench import COLUMNS, bench

    out = bench(
        [tiny_export],
        tmp_path / "b",
        providers="cpu,cuda,tensorrt",
        batch_sizes=[1, 4],
        warmup=1,
        iterations=2,
        data=synthetic_small,
        split="val",
    )
    assert sorted(p.name for p in out.iterdir()) == ["bench.csv", "bench.json", "bench.md", "pareto.png"]
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(out / "bench.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0].keys()) == list(COLUMNS)
    doc = json.loads((out / "bench.json").read_text())
    assert doc["machine"]["cpu"] and doc["machine"]["versions"]["onnxruntime"]
    by = {(r["engine"], r["provider"], r["variant"], r["batch"]): r for r in doc["rows"]}
    import onnxruntime as ort

    for provider, name in (("cuda", "CUDAExecutionProvider"), ("tensorrt", "TensorrtExecutionProvider")):
        if name not in ort.get_available_providers():
            r = by[("ort", provider, "fp32", 1)]
            assert r["status"] == "skipped" and name in r["reason"]
    n_val = len(synthetic_small.split("val"))
    for key in [
        ("ort", "cpu", "fp32", 1),
        ("ort", "cpu", "int8", 4),
        ("keras-predict", "tf", "fp32", 4),
        ("keras-call", "tf", "fp32", 1),
    ]:
        r = by[key]
        assert r["status"] == "ok", r
        assert r["p50_ms"] > 0 and r["p50_ms"] <= r["p99_ms"] and r["throughput_ips"] > 0
        assert r["macs_per_image"] > 0 and r["params"] > 0 and r["peak_rss_mb"] > 0
        assert 0 <= r["accuracy"] <= 1 and r["nll"] > 0 and r["eval_images"] == n_val
    # the same images give the same accuracy through Keras and its fp32 export
    assert by[("ort", "cpu", "fp32", 1)]["accuracy"] == by[("keras-predict", "tf", "fp32", 1)]["accuracy"]
    assert doc["graphs"]["tiny"]["int8"]["quant_format"] in ("QDQ", "QOperator")
    md = (out / "bench.md").read_text()
    assert doc["machine"]["cpu"] in md and "skipped" in md


def test_bench_bare_onnx_reports_keras_skipped_and_refuses_foreign_folder(tiny_export, tmp_path):
    from export.bench import bench
    from zoo.errors import ZooError

    out = bench(
        [tiny_export / "model.onnx"],
        tmp_path / "b",
        engines="ort,keras",
        providers="cpu",
        variants="fp32",
        batch_sizes=[2],
        warmup=0,
        iterations=1,
    )
    rows = json.loads((out / "bench.json").read_text())["rows"]
    assert {r["engine"]: r["status"] for r in rows} == {
        "ort": "ok",
        "keras-predict": "skipped",
        "keras-call": "skipped",
    }
    ok = next(r for r in rows if r["engine"] == "ort")
    assert ok["accuracy"] is None and ok["accuracy_source"] is None  # no --data, no card next to a bare file's metadata
    with pytest.raises(ZooError, match="--force"):
        bench([tiny_export / "model.onnx"], out, engines="ort", providers="cpu", batch_sizes=[1])
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ZooError, match="not written by"):
        bench([tiny_export], foreign, providers="cpu")
    with pytest.raises(ZooError, match="unknown"):
        bench([tiny_export], tmp_path / "c", providers="tpu")


def test_count_macs_of_a_conv_and_gemm_graph():
    from onnx import TensorProto, helper, numpy_helper

    from export.bench.graph import count_macs, count_parameters

    w = numpy_helper.from_array(np.zeros((16, 3, 3, 3), np.float32), "w")
    g = numpy_helper.from_array(np.zeros((16 * 8 * 8, 10), np.float32), "g")
    shape = numpy_helper.from_array(np.array([-1, 16 * 8 * 8], np.int64), "shape")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Reshape", ["c", "shape"], ["f"]),
        helper.make_node("MatMul", ["f", "g"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "t",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])],
        [w, g, shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    macs = count_macs(model)
    # conv: 16 x 8 x 8 outputs x 27 MACs; matmul: 10 outputs x 1024 MACs
    assert macs["by_op"] == {"Conv": 16 * 8 * 8 * 27, "MatMul": 10 * 1024} and not macs["uncounted"]
    assert count_parameters(model) == 16 * 27 + 1024 * 10


def test_zoo_run_bench_stage_writes_the_four_files_then_skips(tiny_pipeline, caplog):
    """The shared tiny `zoo run` benchmarks what it exported (the student, fp32 only): int8 skipped, not failed."""
    from pathlib import Path

    from zoo import config, pipeline

    cfg, _ = tiny_pipeline
    bench_dir = Path(cfg.output) / "bench"
    assert sorted(p.name for p in bench_dir.iterdir()) == ["bench.csv", "bench.json", "bench.md", "pareto.png"]
    rows = json.loads((bench_dir / "bench.json").read_text())["rows"]
    ok = [r for r in rows if r["status"] == "ok"]
    assert [(r["model"], r["variant"]) for r in ok] == [("student", "fp32")] and ok[0]["accuracy"] is not None
    assert [r["variant"] for r in rows if r["status"] == "skipped"] == ["int8"]  # not exported: skipped, not failed
    with caplog.at_level("INFO"):
        pipeline.run(cfg)
    assert any("benchmark exports" in r.message and "skipped" in r.message for r in caplog.records)
    with pytest.raises(Exception, match="providers"):
        config.parse({"bench": {"providers": ["tpu"]}})


def test_gpu_script_on_a_cpu_machine_skips_the_gpu_steps_cleanly(tiny_export, tmp_path):
    import os
    import subprocess
    import sys

    from tests.helpers import REPO

    out = tmp_path / "gpu"
    proc = subprocess.run(
        [
            "bash",
            str(REPO / "benchmarks" / "gpu.sh"),
            "--skip-gpu",
            "--models",
            str(tiny_export),
            "--out",
            str(out),
            "--iterations",
            "1",
            "--engines",
            "ort",
            "--data",
            "synthetic:96",
        ],
        env={**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads((out / "gpu.json").read_text())
    assert doc["steps"]["ConvNeXt training throughput"] == {"status": "skipped", "reason": "--skip-gpu"}
    assert "convnext_training" not in doc
    rows = json.loads((out / "bench" / "bench.json").read_text())["rows"]
    assert {r["provider"] for r in rows} == {"cpu"} and all(r["status"] == "ok" for r in rows)
    assert (out / "bench" / "pareto.png").is_file() and "skipped" in (out / "gpu.md").read_text()


def test_bench_of_a_run_folder_uses_the_export_the_pipeline_wrote(tiny_pipeline):
    """zoo bench on a `zoo run` artifact finds its export through the run's layout, and only a current one."""
    from pathlib import Path

    from export.bench.targets import _sibling_export
    from zoo.artifacts import update_card

    cfg, _ = tiny_pipeline
    out = Path(cfg.output)
    assert _sibling_export(out / "student", "student") == out / "exports" / "student"
    assert (
        _sibling_export(out / "members" / "custom_cnn", "member") is None
    )  # the tiny pipeline exports the student only
    assert _sibling_export(out / "ensembles" / "vote", "ensemble") is None
    copy = out.parent / "elsewhere" / "student"
    assert _sibling_export(copy, "student") is None  # not inside a run: no guessing
    card = (out / "student" / "card.json").read_bytes()  # the fixture is shared: restored byte for byte
    try:  # evaluated since the export (what `zoo evaluate` adds): still the student the export is of
        update_card(out / "student", verify=False, metrics={"val-shifted": {"accuracy": 0.5}})
        assert _sibling_export(out / "student", "student") == out / "exports" / "student"
        update_card(out / "student", verify=False, note="changed after the export")
        assert _sibling_export(out / "student", "student") is None  # the export is of another student
    finally:
        (out / "student" / "card.json").write_bytes(card)


def test_bench_scores_each_model_on_data_at_its_own_size():
    """The pipeline passes ``dataset_at``: a callable size -> Dataset, recorded by its source."""
    from types import SimpleNamespace

    from export.bench.run import _data_name, _eval_images
    from zoo.data import load_dataset

    loaded = {}

    class Ctx:
        cfg = SimpleNamespace(data=SimpleNamespace(source="synthetic:40"))

        def dataset_at(self, size):
            loaded[size] = loaded.get(size) or load_dataset("synthetic:40", size)
            return loaded[size]

    ctx, cache = Ctx(), {}
    classes = list(ctx.dataset_at(16).class_names)
    for size in (16, 24):
        x, y = _eval_images(ctx.dataset_at, "val", size, classes, 3, cache)
        assert x.shape == (3, size, size, 3) and len(y) == 3
    assert sorted(loaded) == [16, 24] and _data_name(ctx.dataset_at) == "synthetic:40"
    assert _data_name("folder/x") == "folder/x" and _data_name(None) is None
