"""zoo.layout: the one owner of a run's folder names, and finding a run from one of its folders."""

from pathlib import Path

import pytest

from zoo.layout import RunLayout, export_name


def test_every_folder_of_a_run_is_named_under_its_root(tmp_path):
    lay = RunLayout(tmp_path)
    assert lay.member_dir("a") == tmp_path / "members" / "a"
    assert lay.ensemble_dir("vote") == tmp_path / "ensembles" / "vote"
    assert lay.student_dir() == tmp_path / "student"
    assert lay.export_dir("member", "a") == tmp_path / "exports" / "member-a"
    assert lay.export_dir("ensemble", "vote") == tmp_path / "exports" / "ensemble-vote"
    assert lay.export_dir("student", "anything") == tmp_path / "exports" / "student"
    assert {lay.bench_dir().name, lay.report_dir().name, lay.curation_dir().name} == {"bench", "report", "curation"}


def test_of_artifact_inverts_the_layout_and_refuses_folders_laid_out_otherwise(tmp_path):
    lay = RunLayout(tmp_path / "run")
    for kind, folder in (
        ("member", lay.member_dir("m")),
        ("ensemble", lay.ensemble_dir("stack")),
        ("student", lay.student_dir()),
    ):
        assert RunLayout.of_artifact(folder, kind).root == lay.root
    assert RunLayout.of_artifact(tmp_path / "elsewhere" / "m", "member") is None
    assert RunLayout.of_artifact(tmp_path / "my-student", "student") is None
    assert RunLayout.of_artifact(Path("x"), "export") is None
    with pytest.raises(ValueError, match="export"):
        export_name("export", "x")


def test_the_pipeline_context_is_a_layout(tmp_path):
    from zoo.config import PipelineConfig
    from zoo.pipeline import Context

    ctx = Context(PipelineConfig(output=str(tmp_path / "out")))
    assert isinstance(ctx, RunLayout) and ctx.member_dir("x") == tmp_path / "out" / "members" / "x"
