"""The shift suite: each family changes what it promises, deterministically, monotone in severity;
cards record the families a model trained for; `zoo evaluate --shift-suite` separates in- and out-of-family."""

import json
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from zoo import shift
from zoo.artifacts import read_card
from zoo.errors import ZooError
from zoo.shift.suite import evaluate_suite, stratified_subset, summarise


@pytest.fixture(scope="module")
def smears():
    """Eight 48-px smear-like images: pink background, a violet nucleus disc, some texture."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:48, :48]
    out = []
    for i in range(8):
        img = np.empty((48, 48, 3), np.float32)
        img[:] = (225, 190, 185)
        r = 10 + i
        disc = (yy - 24) ** 2 + (xx - 24) ** 2 < r**2
        img[disc] = (120, 60, 150)
        img += rng.normal(0, 6, img.shape) + 10 * np.sin(xx / 3.0 + i)[..., None]
        out.append(np.clip(img, 0, 255))
    return np.stack(out).astype(np.uint8)


def _hf_energy(x):
    g = x.astype(np.float64).mean(-1)
    lap = 4 * g[:, 1:-1, 1:-1] - g[:, :-2, 1:-1] - g[:, 2:, 1:-1] - g[:, 1:-1, :-2] - g[:, 1:-1, 2:]
    return float((lap**2).mean())


def test_families_cover_the_issue_and_ops_declare_known_families():
    assert list(shift.FAMILIES) == ["colour", "illumination", "optics", "sensor", "artefacts", "geometry"]
    assert {"channel_gain", "white_balance", "hed_stain", "saturation", "hue"} == set(shift.FAMILIES["colour"])
    assert {"defocus", "motion_blur", "chromatic_shift"} == set(shift.FAMILIES["optics"])
    from zoo.augment.spec import OPS, covered_families

    for op in OPS.values():
        assert set(op.families) <= set(shift.FAMILIES), op.name
    assert covered_families("stain:0.3") == ["colour"]
    assert covered_families("flip_rot90") == []
    assert covered_families("color,blur,jpeg") == ["colour", "illumination", "optics", "sensor"]
    assert covered_families("stain:p=0") == []


@pytest.mark.parametrize("name", [*shift.CORRUPTIONS, *shift.FAMILIES])
def test_every_corruption_is_deterministic_by_seed_and_keeps_shape(smears, name):
    a = shift.corrupt(smears, name, 3, seed=5)
    assert a.dtype == np.uint8 and a.shape == smears.shape
    np.testing.assert_array_equal(a, shift.corrupt(smears, name, 3, seed=5))
    assert not np.array_equal(a, smears)
    assert not np.array_equal(a, shift.corrupt(smears, name, 3, seed=6))
    np.testing.assert_array_equal(shift.corrupt(smears, name, 0, seed=5), smears)


@pytest.mark.parametrize("name", list(shift.CORRUPTIONS))
def test_severity_is_monotone_in_the_mean_pixel_change(smears, name):
    change = [np.abs(shift.corrupt(smears, name, s, seed=1).astype(np.float64) - smears).mean() for s in range(1, 6)]
    assert all(b > a for a, b in pairwise(change)), change


def test_gains_move_channel_means_and_white_balance_moves_red_against_blue(smears):
    base = smears.reshape(len(smears), -1, 3).mean(1)
    gained = shift.corrupt(smears, "channel_gain", 5, seed=0).reshape(len(smears), -1, 3).mean(1)
    ratio = gained / base
    assert np.abs(ratio - 1).max(axis=1).min() > 0.15  # every image: some channel mean moves by >15%
    wb = shift.corrupt(smears, "white_balance", 5, seed=0).reshape(len(smears), -1, 3).mean(1) / base
    assert np.all(np.sign(wb[:, 0] - 1) == -np.sign(wb[:, 2] - 1))


def test_blur_lowers_high_frequencies_monotonically(smears):
    for name in ("defocus", "motion_blur"):
        hf = [_hf_energy(shift.corrupt(smears, name, s, seed=0)) for s in range(6)]
        assert all(b < a for a, b in pairwise(hf)), (name, hf)
        assert hf[5] < 0.5 * hf[0]


def test_colour_and_illumination_keep_sharpness_and_noise_adds_it(smears):
    base = _hf_energy(smears)
    assert _hf_energy(shift.corrupt(smears, "brightness", 2, seed=0)) == pytest.approx(base, rel=0.1)
    assert _hf_energy(shift.corrupt(smears, "gaussian_noise", 5, seed=0)) > 2 * base


@pytest.mark.parametrize("name", shift.FAMILIES["artefacts"])
def test_artefacts_touch_a_bounded_area_that_grows_with_severity(smears, name):
    area = []
    for s in range(1, 6):
        changed = np.abs(shift.corrupt(smears, name, s, seed=2).astype(int) - smears).max(-1) > 3
        area.append(changed.mean(axis=(1, 2)))
    area = np.array(area)
    assert area.max() < 0.2  # never more than a fifth of the image
    assert (area[-1] > 0).all()  # every image got its artefact
    assert np.all(np.diff(area.mean(axis=1)) >= 0)


def test_zoom_changes_apparent_size(smears):
    def dark_fraction(x):
        return float((x.astype(int).sum(-1) < 400).mean())

    base = dark_fraction(smears)
    sizes_in = [dark_fraction(shift.corrupt(smears, "zoom_in", s, seed=0)) for s in (1, 3, 5)]
    sizes_out = [dark_fraction(shift.corrupt(smears, "zoom_out", s, seed=0)) for s in (1, 3, 5)]
    assert base < sizes_in[0] < sizes_in[1] < sizes_in[2]
    assert sizes_out[2] < base  # smaller nucleus (the mirrored border adds nuclei only at the corners)


def test_family_draws_one_corruption_per_image_and_bad_input_is_refused(smears):
    many = np.concatenate([smears] * 4)
    mixed = shift.corrupt(many, "geometry", 5, seed=0)  # zoom_in for some images, zoom_out for the others
    grew = (mixed.astype(int).sum(-1) < 400).mean((1, 2)) > (many.astype(int).sum(-1) < 400).mean((1, 2))
    assert 0 < grew.sum() < len(many)
    with pytest.raises(ZooError, match="unknown shift"):
        shift.corrupt(smears, "fog", 1)
    with pytest.raises(ZooError, match="severity"):
        shift.corrupt(smears, "hue", 6)
    with pytest.raises(ZooError, match="uint8"):
        shift.corrupt(smears.astype(np.float32), "hue", 1)
    with pytest.raises(ZooError, match="unknown shift famil"):
        shift.resolve_families("colour,fog")


def test_corrupt_mixture_uses_only_the_given_families(smears):
    many = np.concatenate([smears] * 4)
    mixed = shift.corrupt_mixture(many, ["artefacts"], (1, 5), seed=3)
    np.testing.assert_array_equal(mixed, shift.corrupt_mixture(many, ["artefacts"], (1, 5), seed=3))
    changed = (np.abs(mixed.astype(int) - many).max(-1) > 3).mean((1, 2))
    assert changed.max() < 0.2 and (changed > 0).all()  # artefacts only: bounded areas
    colour = shift.corrupt_mixture(many, ["colour", "illumination"], (5,), seed=3)
    assert (np.abs(colour.astype(int) - many).max(-1) > 3).mean() > 0.5  # photometric: most pixels
    with pytest.raises(ZooError, match="severities"):
        shift.corrupt_mixture(many, None, (0,))


def test_stratified_subset_keeps_class_proportions():
    labels = np.repeat([0, 1, 2], [500, 300, 200])
    idx = stratified_subset(labels, 100, seed=0)
    assert len(idx) == 100 and np.array_equal(np.bincount(labels[idx]), [50, 30, 20])
    np.testing.assert_array_equal(idx, stratified_subset(labels, 100, seed=0))
    assert len(stratified_subset(labels, 0, 0)) == 1000
    rare = np.array([0] * 99 + [1])
    assert 1 in rare[stratified_subset(rare, 10, 0)]


def test_evaluate_suite_splits_in_and_out_of_family_and_normalises_ce(smears):
    labels = np.arange(len(smears)) % 2

    def predict(x):  # "classifies" by redness: colour shifts hurt it, geometry barely
        red = x[..., 0].astype(float).mean((1, 2)) / 255
        p = np.stack([red, 1 - red], 1)
        return p / p.sum(1, keepdims=True)

    res = evaluate_suite(
        predict, smears, labels, ["a", "b"], families="colour,geometry", severities=(1, 3), max_images=6
    )
    assert res["n"] == 6 and set(res["families"]) == {"colour", "geometry"}
    cell = res["families"]["colour"]["severities"]["3"]
    assert set(cell) >= {"accuracy", "balanced_error", "ece", "by_corruption"}
    json.dumps(res)  # JSON-ready
    s = summarise(res, ["colour", "sensor"])
    assert s["in_family"] == ["colour"] and s["out_of_family"] == ["geometry"]
    assert s["mean_out_of_family_accuracy"] == pytest.approx(res["families"]["geometry"]["mean_accuracy"])
    assert not s["ce_normalised"] and "unnormalised" in s["ce_definition"]
    ref = summarise(res, None, reference=res, reference_name="itself")
    assert ref["ce_normalised"] and "itself" in ref["ce_definition"]
    assert ref["out_of_family"] == ["colour", "geometry"]  # unknown coverage: nothing counted in-family


def _suite_result(accuracies: dict[str, list[float]]) -> dict:
    """An evaluate_suite-shaped result: {family: [accuracy at severity 1, at severity 3]}."""
    return {
        "families": {
            f: {"mean_accuracy": float(np.mean(a)), "severities": {"1": {"accuracy": a[0]}, "3": {"accuracy": a[1]}}}
            for f, a in accuracies.items()
        }
    }


def test_ce_is_the_error_over_the_references_summed_over_severities_and_mce_their_mean():
    """ImageNet-C: CE_f = sum_s E_fs / sum_s E_ref_fs; mCE the mean over families, in and out of family apart."""
    model = _suite_result({"colour": [0.9, 0.7], "geometry": [0.8, 0.6]})
    reference = _suite_result({"colour": [0.8, 0.4], "geometry": [0.9, 0.7]})
    s = summarise(model, ["colour"], reference=reference, reference_name="ref")
    assert s["ce"] == pytest.approx({"colour": (0.1 + 0.3) / (0.2 + 0.6), "geometry": (0.2 + 0.4) / (0.1 + 0.3)})
    assert s["mce"] == pytest.approx((0.5 + 1.5) / 2)
    assert s["mce_in_family"] == pytest.approx(0.5) and s["mce_out_of_family"] == pytest.approx(1.5)
    plain = summarise(model, ["colour"])  # no reference: the mean error over severities
    assert plain["ce"] == pytest.approx({"colour": 0.2, "geometry": 0.3}) and plain["mce"] == pytest.approx(0.25)
    with pytest.raises(ZooError, match="lack family 'geometry'"):
        summarise(model, None, reference=_suite_result({"colour": [0.8, 0.4]}))


def test_card_records_augment_families_and_shift_suite_cli_writes_the_table(tmp_path, synthetic_small, capsys):
    from tests.helpers import TINY_CNN
    from zoo.artifacts import read_card
    from zoo.cli import main
    from zoo.shift.families import artifact_families
    from zoo.train import train

    run = train(
        "custom_cnn",
        synthetic_small,
        tmp_path / "stain",
        image_size=24,
        params=TINY_CNN,
        epochs=1,
        batch_size=32,
        tensorboard=False,
        augment="flip_rot90,stain:0.3",
    )
    card = read_card(run)
    assert card["augment_families"] == ["colour"]
    del card["augment_families"]  # an older card: read back from its training policy
    assert artifact_families(run, card) == ["colour"]

    assert (
        main(
            [
                "evaluate",
                str(run),
                "--data",
                "synthetic:96",
                "--shift-suite",
                "colour,optics",
                "--max-images",
                "12",
                "--split",
                "test",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "OUT" in printed and "unnormalised" in printed
    res = json.loads((run / "eval" / "shift_suite.json").read_text())
    assert res["in_family"] == ["colour"] and res["out_of_family"] == ["optics"]
    assert res["n"] == 12 and set(res["families"]["optics"]["severities"]) == {"1", "2", "3", "4", "5"}
    md = (run / "eval" / "shift_suite.md").read_text()
    assert "| colour | yes (in-family)" in md and "| optics | no (out-of-family)" in md
    assert (run / "eval" / "shift_suite.png").read_bytes()[:4] == b"\x89PNG"
    summary = read_card(run)["metrics"]["shift_suite"]  # the card was re-hashed with the new files
    assert summary["out_of_family"] == ["optics"] and summary["results"] == "eval/shift_suite.json"

    # normalised to a reference file: one wrong on every image (error 1 at each severity) makes CE_f the
    # model's mean error over the severities
    first = json.loads((run / "eval" / "shift_suite.json").read_text())
    always_wrong = json.loads(json.dumps(first))
    for fam in always_wrong["families"].values():
        for cell in fam["severities"].values():
            cell["accuracy"] = 0.0
    reference = tmp_path / "always_wrong.json"
    reference.write_text(json.dumps(always_wrong))
    assert (
        main(
            [
                "evaluate",
                str(run),
                "--data",
                "synthetic:96",
                "--shift-suite",
                "colour,optics",
                "--max-images",
                "12",
                "--split",
                "test",
                "--reference",
                str(reference),
            ]
        )
        == 0
    )
    res2 = json.loads((run / "eval" / "shift_suite.json").read_text())
    assert res2["ce_normalised"] and set(res2["ce"]) == {"colour", "optics"}
    for fam, ce in res2["ce"].items():
        cells = first["families"][fam]["severities"].values()
        assert ce == pytest.approx(np.mean([1 - c["accuracy"] for c in cells]))
    assert main(["evaluate", str(run), "--shift-suite", "fog"]) == 2


def test_registry_runs_ensembles_only_once_registered(tmp_path):
    import ensemble  # noqa: F401
    import export  # noqa: F401
    from zoo import predictors

    assert {"member", "student", "ensemble", "export"} <= set(predictors.registered())
    with pytest.raises(ZooError, match="no predictor is registered"):
        predictors.load_predictor(tmp_path, {"kind": "nonesuch"})


def test_pipeline_runs_the_suite_on_every_model_and_summarises_it(tiny_pipeline):
    """The shared tiny `zoo run`: suite on colour and geometry, plain and magnification-adapted, for both
    members (the second trained with stain augmentation), the vote ensemble and the student."""
    from zoo import config, pipeline

    cfg, report = tiny_pipeline
    out = Path(cfg.output)
    rows = {r["name"]: r for r in json.loads((out / "report" / "summary.json").read_text())}
    assert set(rows) == {"custom_cnn", "second", "vote", "student"}
    assert rows["second"]["shift_suite"]["in_family"] == ["colour"]
    assert rows["custom_cnn"]["shift_suite"]["out_of_family"] == ["colour", "geometry"]
    assert rows["vote"]["shift_suite"]["in_family"] == ["colour"]  # union of its members
    assert rows["custom_cnn"]["shift_suite"]["reference"] == "custom_cnn"  # CE normalised to the first member
    text = report.read_text()
    assert "shifted acc, out-of-family" in text and "| vote | ensemble |" in text
    assert (out / "report" / "shift_suite.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "ensembles" / "vote" / "eval" / "shift_suite.json").is_file()
    # shift_adapt_scale: the suite again with magnification read per set, a file and a column of its own
    for name, row in rows.items():
        folder = Path(row["folder"])
        adapted = json.loads((folder / "eval" / "shift_suite_adapt_scale.json").read_text())
        assert adapted["adapt"]["size"] == read_card(folder)["input"]["image_size"], name
        assert set(adapted["families"]) == {"colour", "geometry"}
        assert row["shift_suite"]["adapt_scale"]["clean_accuracy"] == adapted["clean"]["accuracy"], name
    assert {read_card(Path(r["folder"]))["input"]["image_size"] for r in rows.values()} == {20, 24}
    assert "out-of-family, adapted |" in text
    html = (out / "report" / "index.html").read_text(encoding="utf-8")
    assert "magnification read and undone" in html and html.count(" → ") >= 3 * len(rows)  # 3 columns per model
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("shift_suite*.json")}
    assert len(stamps) == 2 * len(rows)
    pipeline.run(cfg)  # a second run finds every suite stage done, adapted results included
    assert {p: p.stat().st_mtime_ns for p in out.rglob("shift_suite*.json")} == stamps
    with pytest.raises(ZooError, match="shift_families"):
        config.parse({"evaluate": {"shift_families": ["fog"]}})


def test_families_are_read_back_through_ensembles_students_and_exports(tmp_path):
    """Cards without the field: members from their policy, ensembles/students/exports via their parents."""
    from zoo.artifacts import write_card, write_json
    from zoo.shift.families import artifact_families

    base = {"classes": ["a", "b"], "input": {"image_size": 8}}
    for name, augment in (("m1", "flip_rot90,stain"), ("m2", {"spec": "blur,noise"})):
        (tmp_path / name).mkdir()
        write_card(tmp_path / name, {**base, "kind": "member", "name": name, "training": {"augment": augment}})
    ens = tmp_path / "ens"
    write_json(ens / "ensemble.json", {"members": [{"path": "../m1"}, {"path": "../m2"}]})
    write_card(ens, {**base, "kind": "ensemble", "name": "ens"})
    stu = tmp_path / "stu"
    stu.mkdir()
    write_card(
        stu,
        {
            **base,
            "kind": "student",
            "name": "stu",
            "training": {"augment": "jpeg"},
            "distillation": {"teacher": {"path": "../ens"}},
        },
    )
    exp = tmp_path / "exp"
    exp.mkdir()
    write_card(exp, {**base, "kind": "export", "name": "exp", "source": {"folder": str(stu)}})
    assert artifact_families(tmp_path / "m1") == ["colour"]
    assert artifact_families(ens) == ["colour", "optics", "sensor"]
    assert artifact_families(stu) == ["colour", "optics", "sensor"]  # teacher's ∪ own (jpeg: sensor)
    assert artifact_families(exp) == ["colour", "optics", "sensor"]
    write_card(exp, {**base, "kind": "export", "name": "exp", "source": {"folder": str(tmp_path / "gone")}})
    assert artifact_families(exp) is None  # unknown: every family will count as out-of-family


def test_zoo_core_never_imports_ensemble_or_export():
    """Layering: only the application layer (cli, commands, pipeline) may import ensemble/export."""
    import ast

    from tests.helpers import REPO

    root = REPO / "zoo"
    app = {"cli.py", "pipeline.py", "pipeline_stages.py"}
    offenders = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if rel.parts[0] == "commands" or rel.as_posix() in app:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            offenders += [f"{rel}: {n}" for n in names if n.split(".")[0] in ("ensemble", "export")]
    assert offenders == []
