import json
from pathlib import Path

from zoo import config, pipeline
from zoo.artifacts import read_card

TINY = {"widths": [8, 16], "depths": [1, 1], "stem_width": 8}


def tiny_config(tmp_path, **sections):
    data = {
        "name": "tiny",
        "output": str(tmp_path / "out"),
        "data": {"source": "synthetic:96", "image_size": 20},
        "train": {"epochs": 1, "batch_size": 32, "tensorboard": False},
        "members": [
            {"member": "custom_cnn", "params": TINY},
            {"member": "custom_cnn", "name": "second", "params": TINY, "train": {"seed": 1}},
        ],
        "evaluate": {"shifted": None, "shift_suite": False},
        "ensemble": {"enabled": False},
    }
    data.update(sections)
    return config.parse(data)


def test_pipeline_runs_then_skips_complete_stages(tiny_pipeline, caplog):
    cfg, report = tiny_pipeline
    out = Path(cfg.output)
    for name in ("custom_cnn", "second"):
        card = read_card(out / "members" / name)
        assert card["kind"] == "member" and "val" in card["metrics"]
    assert read_card(out / "ensembles" / "vote")["kind"] == "ensemble"
    assert read_card(out / "student")["kind"] == "student"
    assert read_card(out / "exports" / "student")["kind"] == "export"
    rows = json.loads((out / "report" / "summary.json").read_text())
    assert {r["name"] for r in rows} == {"custom_cnn", "second", "vote", "student"}
    assert "| custom_cnn | member |" in report.read_text()
    assert (out / "report" / "summary.png").is_file()
    assert (out / "report" / "index.html").is_file()
    times = json.loads((out / "stages.json").read_text())["stages"]
    assert [t["name"] for t in times][:2] == ["train custom_cnn (custom_cnn)", "train second (custom_cnn)"]
    assert len(times) == 12 and times[-1]["name"] == "HTML report"  # 11 stages and the report
    assert all(t["seconds"] >= 0 for t in times)
    before = (out / "members" / "second" / "card.json").read_bytes()
    # a time under a name this pipeline no longer has (an older version's stage name) is dropped, not summed
    stale = {"name": "shift suite on an-older-output/student", "seconds": 99.0, "finished": "2026-01-01T00:00:00"}
    (out / "stages.json").write_text(json.dumps({"stages": [stale, *times]}))
    caplog.clear()
    with caplog.at_level("INFO"):
        pipeline.run(cfg)
    # 2 members, shifted evaluation, shift suite x4 (2 members, vote, student), vote, student, export,
    # benchmark: all complete, none rerun
    stages = [r.message for r in caplog.records if r.message.startswith("[")]
    assert len(stages) == 11 and all("complete, skipped" in m for m in stages), stages
    assert (out / "members" / "second" / "card.json").read_bytes() == before
    again = json.loads((out / "stages.json").read_text())["stages"]
    assert [t["name"] for t in again] == [t["name"] for t in times]  # skipped stages keep their times
    assert again[:-1] == times[:-1]


def test_a_changed_config_names_exactly_the_finished_stages_it_leaves_stale(tiny_pipeline):
    import copy

    import pytest

    from zoo.errors import ZooError

    cfg, _ = tiny_pipeline
    out = Path(cfg.output)
    recorded = json.loads((out / "config.json").read_text())
    _, stages = pipeline.build(cfg)
    assert pipeline.stale_stages(recorded, cfg, stages) == []  # the same config resumes

    def stale(edit):
        changed = copy.deepcopy(cfg)
        edit(changed)
        return {name: keys for name, keys in pipeline.stale_stages(recorded, changed, pipeline.build(changed)[1])}

    assert stale(lambda c: setattr(c.export, "parity_images", 16)) == {
        "export student to ONNX": ["export"],
        "benchmark exports (latency, throughput, accuracy)": ["export"],  # it measures what the export wrote
    }
    distill = stale(lambda c: setattr(c.distill, "epochs", 2))
    assert set(distill) == {
        "distill vote ensemble into custom_cnn",
        "shift suite on student",  # named from the output folder down: renaming it keeps the names
        "export student to ONNX",
        "benchmark exports (latency, throughput, accuracy)",
    }
    second = stale(lambda c: c.members[1].train.update(seed=5))  # one member's recipe: it and all after it
    assert "train second (custom_cnn)" in second and "train custom_cnn (custom_cnn)" not in second
    assert second["train second (custom_cnn)"] == ["members.second"]
    assert "ensemble vote" in second and "export student to ONNX" in second
    assert "benchmark exports (latency, throughput, accuracy)" in second
    assert set(stale(lambda c: setattr(c, "name", "renamed"))) == set()  # the name shapes no artifact

    grown = copy.deepcopy(cfg)  # a member added to a finished run: refused before anything is written
    grown.members.append(config.MemberConfig(member="custom_cnn", name="third", params=TINY))
    before = (out / "config.json").read_bytes()
    with pytest.raises(ZooError, match=r"finished stage\(s\).*members changed.*new --output"):
        pipeline.run(grown)
    assert (out / "config.json").read_bytes() == before
    assert not (out / "members" / "third").exists()


def test_pipeline_restarts_an_incomplete_stage(tmp_path):
    import pytest

    from zoo import ownership
    from zoo.errors import ZooError

    cfg = tiny_config(tmp_path, members=[{"member": "custom_cnn", "params": TINY}])
    half = tmp_path / "out" / "members" / "custom_cnn"
    half.mkdir(parents=True)
    ownership.write_marker(tmp_path / "out", "pipeline")  # the output folder of an interrupted `zoo run`
    (half / "notes.txt").write_text("not the zoo's: never deleted")
    with pytest.raises(ZooError, match="no card.json"):
        pipeline.run(cfg)
    assert (half / "notes.txt").is_file()
    (half / "notes.txt").unlink()
    ownership.write_marker(half, "member")  # what a training killed before its first checkpoint leaves
    (half / "logs").mkdir()
    pipeline.run(cfg)
    assert read_card(half)["kind"] == "member"


def test_one_member_with_snapshots_makes_a_snapshot_ensemble(tmp_path):
    cfg = tiny_config(
        tmp_path,
        train={"epochs": 2, "batch_size": 32, "tensorboard": False, "snapshots": 2, "patience": 5},
        members=[{"member": "custom_cnn", "params": TINY}],
        data={"source": "synthetic:240", "image_size": 20},
        ensemble={"enabled": True, "methods": ["vote"], "calibrate": False},
    )
    ctx, stages = pipeline.build(cfg)
    member = Path(cfg.output) / "members" / "custom_cnn"
    assert ctx.ensemble_member_dirs(ctx.cfg) == [member, member / "snapshots" / "cycle1"]
    assert [s.name for s in stages][:2] == ["train custom_cnn (custom_cnn)", "ensemble vote"]
    pipeline.run(cfg)
    assert read_card(member)["snapshots"] == ["snapshots/cycle1"]
    spec = json.loads((Path(cfg.output) / "ensembles" / "vote" / "ensemble.json").read_text())
    # Both were fitted: whichever the vote weighs at zero is reported as left out, not forgotten.
    names = [m["name"] for m in spec["members"]] + [d["name"] for d in spec.get("dropped_members", [])]
    assert sorted(names) == ["custom_cnn", "custom_cnn_cycle1"]
    html = (Path(cfg.output) / "report" / "index.html").read_text()
    assert "vote ensemble" in html, "the HTML report shows the ensemble one member made"


def test_one_member_without_snapshots_plans_no_ensemble_work(tmp_path):
    """Ensembles need two members: with one, no stage that would read an ensemble folder is planned."""
    cfg = tiny_config(
        tmp_path,
        members=[{"member": "custom_cnn", "params": TINY}],
        evaluate={"shifted": None, "shift_suite": True, "shift_max_images": 16},
        ensemble={"enabled": True, "methods": ["vote", "stack"], "calibrate": False},
        export={"enabled": True, "include": ["members", "ensembles"]},
    )
    ctx, stages = pipeline.build(cfg)
    assert ctx.ensemble_methods(ctx.cfg) == []
    names = [s.name for s in stages]
    assert "export member-custom_cnn to ONNX" in names and "shift suite on members/custom_cnn" in names
    assert not [n for n in names if "ensemble" in n], names
    two = tiny_config(tmp_path, ensemble={"enabled": True, "methods": ["vote", "stack"]})
    ctx, stages = pipeline.build(two)
    assert ctx.ensemble_methods(ctx.cfg) == ["vote", "stack"]


def test_the_run_time_target_is_judged_only_when_every_stage_has_a_time(tiny_pipeline):
    """benchmarks/pipeline_run.py: a run whose members were trained elsewhere (or whose student did not finish)
    has no time for those stages, and the sum of the others is not the run's time."""
    import pipeline_run

    cfg, _ = tiny_pipeline
    out = Path(cfg.output)
    stages = pipeline_run.stage_times(out, [])
    assert pipeline_run.untimed_stages(out, stages) == []
    partial = [s for s in stages if not s["name"].startswith("train ")]
    missing = pipeline_run.untimed_stages(out, partial)
    assert missing == ["train custom_cnn (custom_cnn)", "train second (custom_cnn)"]
    row = pipeline_run.targets({}, [], {}, 60.0, untimed=missing)[-1]
    assert row["met"] is None and row["value"].startswith("not measured: 2 of its stages have no time")
    assert pipeline_run.targets({}, [], {}, 60.0)[-1] == {
        "target": "whole run <= 2 h on 2 cores",
        "value": "1 min",
        "met": True,
    }


def test_the_student_is_compared_with_its_own_teacher_image_by_image(tiny_pipeline):
    """benchmarks/pipeline_run.py: the images only the student or only its teacher (the vote) gets right."""
    import pipeline_run

    cfg, _ = tiny_pipeline
    out = Path(cfg.output)
    arts = pipeline_run.artifacts(out)
    teachers = pipeline_run._teachers(arts)
    assert teachers == {"student": "vote"}
    spec = json.loads((out / "ensembles" / "vote" / "ensemble.json").read_text())
    assert pipeline_run.combiners(arts)["vote"] == {
        "method": "vote",
        "members": [m["name"] for m in spec["members"]],
        "weights": spec["weights"],
        **({"dropped": [d["name"] for d in spec["dropped_members"]]} if spec.get("dropped_members") else {}),
    }
    pair = pipeline_run.versus_teacher(arts, teachers)["student"]
    s, y = pipeline_run.split_probs(out / "student", "student", "val")
    t, _ = pipeline_run.split_probs(out / "ensembles" / "vote", "ensemble", "val")  # out-of-fold
    s_ok, t_ok = s.argmax(1) == y, t.argmax(1) == y
    assert (pair["student_only"], pair["teacher_only"]) == (int((s_ok & ~t_ok).sum()), int((t_ok & ~s_ok).sum()))
    assert 0 < pair["p_value"] <= 1

    def row(name, kind, acc):
        return {"name": name, "kind": kind, "accuracy": acc, "ci_low": acc, "ci_high": acc}

    clean = {"val": [row("vote", "ensemble", 0.99), row("student", "student", 0.988)]}
    paired = {"student": {"teacher": "vote", "teacher_only": 3, "student_only": 1, "p_value": 0.625}}
    rows = pipeline_run.targets(clean, [], {}, None, {"student": "vote"}, paired=paired)
    (within,) = [r for r in rows if "of its teacher" in r["target"]]
    assert within["met"]
    assert "1 images only the student gets right, 3 only the teacher, exact McNemar p = 0.625" in within["value"]
