"""`zoo report`: one self-contained HTML page with every section, on a complete and on a partial run."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from zoo.cli import main

SECTIONS = (
    "overview",
    "data",
    "training",
    "members",
    "ensembles",
    "distillation",
    "export",
    "benchmark",
    "confusion",
    "reliability",
    "robustness",
    "mistakes",
)


def _sections(html: str) -> dict[str, str]:
    parts = re.split(r'<section id="([a-z]+)">', html)
    return dict(zip(parts[1::2], parts[2::2]))


def test_report_has_every_section_and_is_self_contained(tiny_pipeline):
    import json

    cfg, _ = tiny_pipeline
    html = (Path(cfg.output) / "report" / "index.html").read_text(encoding="utf-8")
    found = _sections(html)
    assert list(found) == list(SECTIONS)
    # no network: every src/href is a data: URI or an in-page anchor
    for ref in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert ref.startswith(("data:image/png;base64,", "#")), ref
    assert "<script" not in html and "<link" not in html
    for sid in (
        "overview",
        "data",
        "training",
        "members",
        "ensembles",
        "distillation",
        "export",
        "confusion",
        "reliability",
        "robustness",
        "mistakes",
        "benchmark",
    ):
        assert "<table" in found[sid] or "<img" in found[sid], sid
    assert found["data"].count("<img") >= 1 and "basophil" in found["data"]  # counts + montage
    assert "members at 20 and 24 px (ensembles at 24)" in found["data"]  # not the data section's 20 px alone
    assert found["training"].count("<img") == 3  # two members and the student
    assert found["confusion"].count("<img") == 4 and found["reliability"].count("<img") == 4  # + vote ensemble
    assert "Where the errors are on test" in found["confusion"] and "most confused pairs" in found["confusion"]
    assert "student" in found["export"] and "passed" in found["export"]
    assert "ensemble of the members " in found["distillation"] and "[&#39;" not in found["distillation"]  # no list repr
    # the ensemble stage's evidence: bootstrap CIs and McNemar against the best member, as recorded
    rows = json.loads((Path(cfg.output) / "ensembles" / "vote" / "comparison.json").read_text())
    assert f"[{100 * rows[0]['ci_low']:.1f}%, {100 * rows[0]['ci_high']:.1f}%]" in found["ensembles"]
    assert "McNemar p (b/c)" in found["ensembles"]
    assert "val shifted" in found["robustness"]
    assert "shifted, out-of-family" in found["robustness"] and "mCE" in found["robustness"]  # the shift suite ran
    assert "Grad-CAM" in found["mistakes"] or "made no mistakes" in found["mistakes"]
    assert "student" in found["benchmark"] and "1 row(s) skipped: no int8 file" in found["benchmark"]
    # what this run lacks is said, not hidden
    assert "Curation findings: none recorded" in found["data"]


def test_report_of_a_partial_run_says_what_is_missing(tiny_pipeline, tmp_path, capsys):
    cfg, _ = tiny_pipeline
    run = tmp_path / "partial"
    shutil.copytree(
        cfg.output, run, ignore=shutil.ignore_patterns("student", "exports", "ensembles", "bench", "report")
    )
    (run / "members" / "second" / "card.json").unlink()  # an interrupted training
    assert main(["report", str(run)]) == 0
    assert str(run / "report" / "index.html") in capsys.readouterr().out
    found = _sections((run / "report" / "index.html").read_text(encoding="utf-8"))
    assert list(found) == list(SECTIONS)
    assert "second: " in found["training"] and "incomplete" in found["training"]
    assert "vote ensemble: not run yet" in found["ensembles"]
    assert "student: not run yet" in found["distillation"]
    assert "No exports in this run" in found["export"]
    assert "No benchmark in this run" in found["benchmark"]
    assert "could not be built" not in "".join(found.values())


def test_report_shows_other_stages_files_when_present(tiny_pipeline, tmp_path):
    """Benchmark and curation findings come from other commands' files."""
    import json

    from zoo.pipeline import context_for_run, write_html_report

    cfg, _ = tiny_pipeline
    run = tmp_path / "full"
    shutil.copytree(cfg.output, run, ignore=shutil.ignore_patterns("bench"))  # the pipeline's own: replaced here
    png = next((run / "members" / "custom_cnn" / "plots").glob("*.png"))
    (run / "bench").mkdir()
    shutil.copy(png, run / "bench" / "pareto.png")
    (run / "bench" / "bench.json").write_text(
        json.dumps(
            {
                "rows": [
                    {
                        "model": "student",
                        "engine": "ort",
                        "provider": "cpu",
                        "variant": "int8",
                        "batch": 1,
                        "p50_ms": 0.41,
                        "throughput_ips": 2400.5,
                        "accuracy": 0.91,
                        "model_mb": 0.11,
                        "status": "ok",
                    },
                    {
                        "model": "student",
                        "engine": "ort",
                        "provider": "cuda",
                        "variant": "fp16",
                        "batch": 1,
                        "status": "skipped",
                        "reason": "CUDAExecutionProvider not available",
                    },
                ]
            }
        )
    )
    (run / "bench" / "bench.md").write_text("# zoo bench\n\n**Machine:** 2-core test CPU\n**Load:** load average 0.1\n")
    (run / "curation").mkdir()
    (run / "curation" / "report.json").write_text(json.dumps({"summary": {"images": 240, "exact_duplicates": 3}}))
    found = _sections(write_html_report(context_for_run(run)).read_text(encoding="utf-8"))
    bench = found["benchmark"]
    assert "<img" in bench and "2400" in bench and "2-core test CPU" in bench
    assert "1 row(s) skipped: CUDAExecutionProvider not available" in bench and "91.00%" in bench
    assert "exact duplicates" in found["data"]


def test_report_shows_each_ensembles_comparison_once_and_apart_when_they_differ(tiny_pipeline, tmp_path):
    """Ensembles fitted alike hold one comparison; a robust fit's (its combiners fitted on shifted copies too)
    differs, and the report must not show one build's table as every ensemble's."""
    import json

    from zoo.pipeline import context_for_run, write_html_report

    cfg, _ = tiny_pipeline
    run = tmp_path / "two"
    shutil.copytree(cfg.output, run)
    conf = json.loads((run / "config.json").read_text())
    conf["ensemble"]["methods"] = ["vote", "stack"]
    (run / "config.json").write_text(json.dumps(conf))
    shutil.copytree(run / "ensembles" / "vote", run / "ensembles" / "stack")

    def ensembles_section() -> str:
        return _sections(write_html_report(context_for_run(run)).read_text(encoding="utf-8"))["ensembles"]

    same = ensembles_section()
    assert same.count("split val (") == 1 and "build fitted and scored them" not in same
    rows = json.loads((run / "ensembles" / "stack" / "comparison.json").read_text())
    (run / "ensembles" / "stack" / "comparison.json").write_text(json.dumps([r for r in rows if r["split"] == "val"]))
    apart = ensembles_section()
    assert apart.count("split val (") == 2 and apart.count("split test (") == 1
    assert apart.count("build fitted and scored them") == 2
    assert "<h3>vote ensemble</h3>" in apart and "<h3>stack ensemble</h3>" in apart


def test_report_pictures_fall_back_to_val_when_the_data_has_no_test_split(tiny_pipeline, tmp_path):
    """A config may ask for test on data that has none (PBC's tree here: train and val); the pictures then use
    val, and an ensemble fitted on val is drawn from its out-of-fold predictions."""
    import numpy as np

    from zoo.pipeline import context_for_run, write_html_report
    from zoo.report.sections import reading

    cfg, _ = tiny_pipeline
    run = tmp_path / "no_test"
    shutil.copytree(cfg.output, run)
    for f in list(run.rglob("probs/test*.npy")):
        f.unlink()
    for d in list(run.rglob("eval/test")):
        shutil.rmtree(d)
    layout = context_for_run(run)
    assert "test" in layout.cfg.evaluate.splits and reading.report_split(layout) == "val"
    vote = run / "ensembles" / "vote"
    probs, _ = reading.stored_probs(vote, "val")
    np.testing.assert_array_equal(probs, np.load(vote / "probs" / "val_oof.npy"))
    found = _sections(write_html_report(context_for_run(run)).read_text(encoding="utf-8"))
    assert "on the val split" in found["confusion"] and found["confusion"].count("<img") == 4
    assert "no test predictions" not in found["confusion"] + found["reliability"]
    assert found["reliability"].count("<img") == 4
    assert (run / "report" / "figures" / "confusion_vote_val.png").is_file()  # drawn from the out-of-fold probs
    oof, y = np.load(vote / "probs" / "val_oof.npy"), np.load(vote / "probs" / "val_labels.npy")
    wrong = int((oof.argmax(1) != y).sum())
    assert f'<tr><td>vote ensemble</td><td class="num">{wrong}</td>' in found["confusion"]  # errors, out-of-fold


def test_training_table_names_an_augmentation_preset_rather_than_its_expanded_spec():
    from zoo.report.sections.curves import _augment

    spec = "flip_rot90,stain:0.35:0.5,color:0.5:0.4"
    preset = {
        "config": {"augment": "shift_mixed"},
        "augment": {"spec": spec, "policies": ["flip_rot90", "stain", "color"]},
    }
    assert _augment(preset) == "shift_mixed (flip_rot90, stain, color)"
    plain = {"config": {"augment": "flip_rot90"}, "augment": {"spec": "flip_rot90", "policies": ["flip_rot90"]}}
    assert _augment(plain) == "flip_rot90" and _augment({"augment": {"spec": spec}}) == spec and _augment({}) == ""


def test_report_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "not a `zoo run` output folder" in capsys.readouterr().err


@pytest.fixture(scope="module")
def chromium():
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        pytest.skip("headless browser test: chromium is not installed (Debian/Ubuntu: apt-get install -y chromium)")
    return exe


CHECK = """<script>
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const result = {images: imgs.length, broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt),
                  tables: document.querySelectorAll('table').length,
                  sections: Array.from(document.querySelectorAll('section')).map(s => s.id)};
  const pre = document.createElement('pre');
  pre.id = 'zoo-check';
  pre.textContent = JSON.stringify(result);
  document.body.appendChild(pre);
});
</script>"""


def _browser(exe: str, tmp: Path, *args: str) -> str:
    import subprocess

    cmd = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={tmp / 'profile'}",
        "--virtual-time-budget=10000",
        *args,
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_report_renders_in_a_real_browser(tiny_pipeline, chromium, tmp_path):
    import html as htmllib
    import json

    import numpy as np
    from PIL import Image

    cfg, _ = tiny_pipeline
    page = (Path(cfg.output) / "report" / "index.html").read_text(encoding="utf-8")
    probe = tmp_path / "probe.html"  # the report itself carries no script: the check goes into a copy
    probe.write_text(page.replace("</body>", CHECK + "</body>"), encoding="utf-8")
    dom = _browser(chromium, tmp_path, "--dump-dom", probe.as_uri())
    m = re.search(r'<pre id="zoo-check">(.*?)</pre>', dom, re.DOTALL)
    assert m, "the page's check script did not run"
    result = json.loads(htmllib.unescape(m.group(1)))
    assert result["broken"] == [] and result["images"] >= 15
    assert result["tables"] >= 8 and result["sections"] == list(SECTIONS)
    shot = tmp_path / "report.png"
    _browser(
        chromium,
        tmp_path,
        f"--screenshot={shot}",
        "--window-size=1300,2400",
        (Path(cfg.output) / "report" / "index.html").as_uri(),
    )
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.shape == (2400, 1300) and pixels.std() > 20  # something was drawn, not a blank page
