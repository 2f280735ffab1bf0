"""`zoo explain`: Grad-CAM for runs, weighted Grad-CAM for ensembles, occlusion for ONNX exports."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zoo.cli import main
from zoo.commands.explain import load_explainer
from zoo.errors import ZooError


def _two_images(dataset) -> np.ndarray:
    """Two validation images of different classes (different cells, different places to look)."""
    part = dataset.split("val")
    a = int(np.flatnonzero(part.labels == part.labels[0])[0])
    b = int(np.flatnonzero(part.labels != part.labels[0])[0])
    return part.images[[a, b]]


def test_gradcam_of_a_run_differs_between_images_and_cli_writes_one_overlay_each(
    trained_run, synthetic_small, tmp_path, capsys
):
    images = _two_images(synthetic_small)
    explainer = load_explainer(trained_run)
    probs, heat = explainer.explain(images)
    assert probs.shape == (2, synthetic_small.num_classes) and np.allclose(probs.sum(1), 1, atol=1e-4)
    assert heat.shape == (2, 24, 24) and heat.min() >= 0 and heat.max() <= 1 and heat.max() == pytest.approx(1)
    assert np.abs(heat[0] - heat[1]).mean() > 0.02  # the two cells are explained differently

    folder = tmp_path / "imgs"
    (folder / ".hidden").mkdir(parents=True)
    for i, img in enumerate(images):
        Image.fromarray(img).save(folder / f"cell{i}.png")
    Image.fromarray(images[0]).save(folder / ".hidden" / "skipped.png")
    (folder / "broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "explained"
    assert main(["explain", str(trained_run), str(folder), "--out", str(out)]) == 0
    assert "explained 2 image(s), 1 unreadable" in capsys.readouterr().out
    with open(out / "predictions.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [Path(r["file"]).name for r in rows] == ["broken.jpg", "cell0.png", "cell1.png"]
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == 2 and all((out / r["overlay"]).is_file() for r in ok)
    assert sorted(p.name for p in out.glob("*.png")) == sorted(r["overlay"] for r in ok)
    assert rows[0]["status"].startswith("error")
    for r, p in zip(ok, probs):
        assert r["predicted"] == synthetic_small.class_names[int(p.argmax())]
    # the output folder is new or refused, never overwritten
    assert main(["explain", str(trained_run), str(folder), "--out", str(out)]) == 2
    assert "refusing" in capsys.readouterr().err


def test_ensemble_is_the_weighted_members_and_an_export_gets_occlusion(tiny_pipeline):
    import json

    from zoo.data import load_dataset

    cfg, _ = tiny_pipeline
    root = Path(cfg.output)
    ens = load_explainer(root / "ensembles" / "vote")
    assert ens.image_size == 24  # the members take 20 and 24 px: the ensemble takes the larger
    data = load_dataset(cfg.data.source, ens.image_size)
    images = _two_images(data)
    weights = json.loads((root / "ensembles" / "vote" / "ensemble.json").read_text())["weights"]
    assert ens.weights == pytest.approx(weights) and "weighted" in ens.method
    probs, heat = ens.explain(images)
    assert probs.shape == (2, len(data.class_names)) and heat.shape == (2, 24, 24)
    # the ensemble's own probabilities: every member on the ensemble's image, through its in-graph resize
    from ensemble import load

    np.testing.assert_allclose(probs, load(root / "ensembles" / "vote").predict_proba(images), atol=1e-5)
    # by hand: the members' maps for the ensemble's classes, weighted
    cls = probs.argmax(1)
    from zoo.explain import _normalise

    used = [(m, w) for m, w in zip(ens.members, ens.weights) if w > 0]
    by_hand = _normalise(sum(w * m.explain(images, cls)[1] for m, w in used) / sum(w for _, w in used))
    assert np.allclose(heat, by_hand, atol=1e-4)

    onnx = load_explainer(root / "exports" / "student")
    assert onnx.method == "occlusion"
    p, h = onnx.explain(images)
    assert h.shape == (2, 24, 24) and np.abs(h[0] - h[1]).mean() > 0.02
    assert np.allclose(p.sum(1), 1, atol=1e-4)


def test_gradcam_finds_the_feature_map_inside_a_nested_backbone():
    from zoo.explain import GradCam
    from zoo.registry import get_spec

    model = get_spec("convnext_atto").build(4, 64)
    cam = GradCam(model)
    assert cam._nested and cam.feature_layer.startswith(("stage", "downsample"))
    x = np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3)).astype(np.uint8)
    _, heat = cam.explain(x)  # checks its own probabilities against model.predict
    assert heat.shape == (2, 64, 64) and np.isfinite(heat).all()


def test_unknown_model_is_a_user_error(tmp_path):
    with pytest.raises(ZooError):
        load_explainer(tmp_path)
