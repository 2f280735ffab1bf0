"""``zoo explain RUN|ENSEMBLE|EXPORT IMAGE|FOLDER… --out DIR``: where the model looked, per image.

Application layer: this is where the artifact kinds meet :mod:`zoo.explain` — a member or
student gets Grad-CAM, an ensemble the weighted average of its members' Grad-CAMs (weights from
``ensemble.json``; stacking has none, so its members count equally), an ONNX export an occlusion
map computed with ONNX Runtime. :func:`load_explainer` is also what the report's gallery uses.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import ZooError

log = logging.getLogger(__name__)


def register(sub) -> None:
    p = sub.add_parser(
        "explain",
        help="Grad-CAM / occlusion heat maps: where a run, ensemble or export looked in each image",
        description="For each image: a PNG with the original and a heat-map overlay (predicted class and probability "
        "in the title), plus predictions.csv. Members and students: Grad-CAM on their last convolutional "
        "feature map; ensembles: their members' Grad-CAMs averaged with the ensemble's weights; ONNX "
        "exports (or a bare .onnx): an occlusion map from ONNX Runtime. --out must be a new folder.",
    )
    p.add_argument(
        "model",
        metavar="RUN|ENSEMBLE|EXPORT",
        help="member/student run folder, ensemble folder, export folder or .onnx",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="IMAGE|FOLDER",
        help="image files and/or folders (searched recursively, hidden skipped)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="new folder for the PNGs and predictions.csv")
    p.add_argument(
        "--variant", choices=("fp32", "fp16", "int8"), help="which ONNX file of an export folder (default fp32)"
    )
    p.set_defaults(func=run)


def run(args) -> int:
    out, rows = explain_files(args.model, args.inputs, args.out, variant=args.variant)
    ok = [r for r in rows if r["status"] == "ok"]
    for r in ok:
        print(f"{r['file']}: {r['predicted']} ({float(r['confidence']):.1%})  -> {r['overlay']}")
    bad = len(rows) - len(ok)
    print(f"explained {len(ok)} image(s)" + (f", {bad} unreadable (see predictions.csv)" if bad else "") + f": {out}/")
    return 0


# ----------------------------------------------------------------------------- artifacts -> explainers
def load_explainer(path: str | os.PathLike, variant: str | None = None):
    """The :class:`zoo.explain.Explainer` for a run, ensemble, export folder or ``.onnx`` file."""
    from zoo.artifacts import read_card
    from zoo.explain import GradCam, Occlusion, Weighted

    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".onnx":
        kind, card = "export", None
    else:
        card = read_card(path)
        kind = card["kind"]
    if kind in ("member", "student"):
        from zoo.runs import load_model

        return GradCam(load_model(path, card), name=card["name"], classes=card["classes"])
    if kind == "ensemble":
        import ensemble

        ens = ensemble.load(path)
        members = [GradCam(m, name=mem.name, classes=ens.classes) for m, mem in zip(ens.models(), ens.members)]
        weights = ens.spec.get("weights") if ens.spec.get("method") == "vote" else None
        weights = [float(w) for w in weights] if weights is not None else [1.0] * len(members)
        if len(weights) != len(members) or not all(np.isfinite(weights)) or min(weights) < 0 or sum(weights) <= 0:
            raise ZooError(f"{path}: ensemble.json weights {weights} do not fit its {len(members)} members")
        method = "Grad-CAM, members weighted " + " / ".join(f"{w:.2f}" for w in weights)
        return Weighted(card["name"], ens.classes, ens.image_size, members, weights, ens.combine, method=method)
    if kind == "export":
        from export.predictor import load

        model = load(path, "cpu", variant=variant)
        name = card["name"] if card else path.stem
        return Occlusion(name, model.classes, model.image_size, lambda x: model.predict(x, batch_size=128))
    raise ZooError(f"{path}: cannot explain a '{kind}' folder")


# ----------------------------------------------------------------------------- files
def explain_files(
    model: str | os.PathLike,
    inputs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    variant: str | None = None,
    batch_size: int = 16,
) -> tuple[Path, list[dict[str, Any]]]:
    """Write one overlay PNG per readable image and ``predictions.csv`` into the new folder ``out``.

    Images are listed and read like ``zoo predict`` does (hidden files skipped, special files never
    read); ``out`` follows the ownership rule: a new or empty folder, assembled aside and renamed in.
    """
    from export.predictor import _read, list_inputs
    from zoo import ownership
    from zoo.artifacts import write_text
    from zoo.explain import explanation_figure

    files = list_inputs(inputs)
    with ownership.claim(out, "explanations", sources=[model]) as claim, claim.staging() as partial:
        explainer = load_explainer(model, variant)
        classes = explainer.classes
        rows: list[dict[str, Any]] = []
        pending: list[tuple[Path, np.ndarray]] = []

        def flush() -> None:
            if not pending:
                return
            probs, heat = explainer.explain(np.stack([img for _, img in pending]))
            for (f, img), p, h in zip(pending, probs, heat):
                k = int(np.argmax(p))
                png = f"{len(rows):04d}_{f.stem}.png"
                explanation_figure(partial / png, img, h, f"{f.name}: {classes[k]} ({p[k]:.1%})", explainer.method)
                rows.append(
                    {
                        "file": str(f),
                        "status": "ok",
                        "predicted": classes[k],
                        "confidence": f"{p[k]:.6f}",
                        "overlay": png,
                        **{c: f"{v:.6f}" for c, v in zip(classes, p)},
                    }
                )
            pending.clear()

        for f in files:
            img, why = _read(f, explainer.image_size)
            if img is None:
                log.warning("%s: skipped (%s)", f, why)
                rows.append({"file": str(f), "status": f"error: {why}"})
                continue
            pending.append((f, img))
            if len(pending) >= batch_size:
                flush()
        flush()
        buf = io.StringIO()
        writer = csv.DictWriter(
            buf, fieldnames=["file", "status", "predicted", "confidence", "overlay", *classes], restval=""
        )
        writer.writeheader()
        writer.writerows(rows)
        write_text(partial / "predictions.csv", buf.getvalue())
    log.info(
        "%s (%s): %d overlays in %s", explainer.name, explainer.method, sum(r["status"] == "ok" for r in rows), out
    )
    return Path(out), rows
