"""Curation finds planted duplicates, leakage, outliers and unreadable files, and never touches the data."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from zoo.errors import ZooError

SIZE = 40
CLASSES = ("lymph", "mono", "neutro")


def cell_image(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """A crude smear crop: pinkish background, a few red-cell rings, a textured purple nucleus."""
    bg = np.array([236, 208, 200]) + rng.normal(0, 5, 3)
    img = Image.fromarray(np.clip(bg + rng.normal(0, 3, (size, size, 3)), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(rng.integers(3, 7)):
        x, y, r = rng.uniform(0, size, 2).tolist() + [float(rng.uniform(4, 7))]
        draw.ellipse([x - r, y - r, x + r, y + r], outline=(200, 150, 165), width=2, fill=(222, 180, 185))
    c = size / 2 + rng.uniform(-3, 3, 2)
    r = rng.uniform(7, 11, 2)
    draw.ellipse(
        [c[0] - r[0], c[1] - r[1], c[0] + r[0], c[1] + r[1]],
        fill=tuple(int(v) for v in np.array([115, 70, 150]) + rng.normal(0, 8, 3)),
    )
    arr = np.asarray(img.filter(ImageFilter.GaussianBlur(0.6))).astype(np.float64)
    yy, xx = np.mgrid[:size, :size]
    inside = ((yy - c[1]) / r[1]) ** 2 + ((xx - c[0]) / r[0]) ** 2 < 1
    arr[inside] += rng.normal(0, 18, (inside.sum(), 1))  # chromatin texture
    return np.clip(arr, 0, 255).astype(np.uint8)


def text_image(size: int = SIZE) -> np.ndarray:
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    for k in range(4):
        draw.text((1, 1 + 10 * k), "lorem ipsum", fill="black")
    return np.asarray(img)


def save(arr: np.ndarray, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)
    return path


@pytest.fixture()
def tree(tmp_path) -> dict:
    """train/val class folders of 6 + 3 synthetic cells each, plus planted problems."""
    rng = np.random.default_rng(0)
    root = tmp_path / "cells"
    for split, n in (("train", 6), ("val", 3)):
        for c in CLASSES:
            for i in range(n):
                fmt = {"format": "JPEG", "quality": 95} if i % 2 else {}
                save(cell_image(rng), root / split / c / f"{c}_{i}.{'jpg' if i % 2 else 'png'}", **fmt)
    planted = {}
    # exact duplicate across splits (leakage), same label
    shutil.copyfile(root / "train/lymph/lymph_0.png", root / "val/lymph/lymph_copy.png")
    planted["exact_leak"] = {"train/lymph/lymph_0.png", "val/lymph/lymph_copy.png"}
    # exact duplicate within train with a different label (label noise)
    shutil.copyfile(root / "train/mono/mono_2.png", root / "train/neutro/mono_2_again.png")
    planted["exact_conflict"] = {"train/mono/mono_2.png", "train/neutro/mono_2_again.png"}
    # near duplicate across splits: re-encoded as JPEG q80 and brightened
    src = np.asarray(Image.open(root / "train/neutro/neutro_0.png")).astype(np.int16)
    save(np.clip(src + 12, 0, 255).astype(np.uint8), root / "val/neutro/neutro_bright.jpg", format="JPEG", quality=80)
    planted["near_leak"] = {"train/neutro/neutro_0.png", "val/neutro/neutro_bright.jpg"}
    # near duplicate within train: the same field rotated by 90 degrees
    src = np.asarray(Image.open(root / "train/lymph/lymph_4.png"))
    save(np.rot90(src).copy(), root / "train/lymph/lymph_4_rot.png")
    planted["near_rot"] = {"train/lymph/lymph_4.png", "train/lymph/lymph_4_rot.png"}
    # not blood-cell images
    save(text_image(), root / "train/mono/scan_of_a_form.png")
    save(np.full((SIZE, SIZE, 3), (30, 170, 60), np.uint8), root / "train/neutro/green.png")
    save(np.zeros((SIZE, SIZE, 3), np.uint8), root / "val/mono/black.png")
    planted["outliers"] = {"train/mono/scan_of_a_form.png", "train/neutro/green.png", "val/mono/black.png"}
    # unreadable image and a stray non-image file
    (root / "train/lymph/broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (root / "train/lymph/notes.txt").write_text("not an image")
    return {"root": root, "planted": planted}


def snapshot(root: Path) -> dict[str, tuple]:
    return {
        p.relative_to(root).as_posix(): (
            hashlib.sha256(p.read_bytes()).hexdigest(),
            p.stat().st_mtime_ns,
            p.stat().st_mode,
        )
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_inspect_finds_planted_problems_and_nothing_else(tree, tmp_path):
    from zoo.curate import inspect

    root, planted = tree["root"], tree["planted"]
    before = snapshot(root)
    report = inspect(root, out=tmp_path / "report")
    assert snapshot(root) == before

    assert report["layout"] == "splits" and report["classes"] == sorted(CLASSES)
    assert report["counts"]["train"] == {"lymph": 8, "mono": 7, "neutro": 8}
    assert report["counts"]["val"] == {"lymph": 4, "mono": 4, "neutro": 4}
    assert report["image_sizes"]["distinct"] == {f"{SIZE}x{SIZE}": report["total"] - 1}  # all but the broken file

    exact = {frozenset(g["files"]): g for g in report["exact_duplicates"]}
    assert set(exact) == {frozenset(planted["exact_leak"]), frozenset(planted["exact_conflict"])}
    assert exact[frozenset(planted["exact_leak"])]["cross_split"]
    assert not exact[frozenset(planted["exact_leak"])]["conflicting_labels"]
    assert exact[frozenset(planted["exact_conflict"])]["conflicting_labels"]

    near = {frozenset(g["files"]): g for g in report["near_duplicates"]}
    assert set(near) == {frozenset(planted["near_leak"]), frozenset(planted["near_rot"])}
    assert near[frozenset(planted["near_leak"])]["cross_split"]
    assert near[frozenset(planted["near_rot"])]["symmetry"] != "identity"
    assert report["leakage"] == {"train~val": 2}

    assert {o["file"] for o in report["outliers"]} == planted["outliers"]
    assert [u["file"] for u in report["unreadable"]] == ["train/lymph/broken.jpg"]
    assert report["other_files"] == ["train/lymph/notes.txt"]

    drop = {d["file"]: d["reason"] for d in report["drop"]}
    # leaked training copies go, evaluation copies stay; conflicting-label groups go entirely
    assert "train/lymph/lymph_0.png" in drop and "val/lymph/lymph_copy.png" not in drop
    assert "train/neutro/neutro_0.png" in drop and "val/neutro/neutro_bright.jpg" not in drop
    assert planted["exact_conflict"] <= set(drop)
    assert len(planted["near_rot"] & set(drop)) == 1
    assert planted["outliers"] <= set(drop) and "train/lymph/broken.jpg" in drop
    assert len(drop) == 2 + 1 + 1 + 1 + 3 + 1

    out = tmp_path / "report"
    saved = json.loads((out / "report.json").read_text())
    assert saved["summary"] == report["summary"]
    md = (out / "report.md").read_text()
    assert "## Exact duplicates" in md and "cross-split" in md and "scan_of_a_form.png" in md
    with Image.open(out / "flagged.png") as im:
        assert im.format == "PNG"


@pytest.mark.parametrize("mode", ["link", "copy", "list"])
def test_clean_writes_a_copy_and_never_touches_the_originals(tree, tmp_path, mode):
    from zoo.curate import clean

    root = tree["root"]
    before = snapshot(root)
    out = tmp_path / f"clean_{mode}"
    summary = clean(root, out, mode=mode)
    assert snapshot(root) == before, "the source tree changed"

    dropped = [line.split("\t")[0] for line in (out / "drop.txt").read_text().splitlines()]
    assert summary["dropped"] == len(dropped) == 9
    assert (out / "report.json").exists() and (out / "report.md").exists()
    if mode == "list":
        assert not (out / "data").exists()
        return
    kept = sorted(p.relative_to(out / "data").as_posix() for p in (out / "data").rglob("*") if p.is_file())
    images = [k for k in before if not k.endswith(".txt")]
    assert kept == sorted(set(images) - set(dropped))
    # source and copy share one file system here (tmp_path), so every kept image can be a hard link
    assert (summary["linked"], summary["copied"]) == ((len(kept), 0) if mode == "link" else (0, len(kept)))
    for rel in kept:
        assert (out / "data" / rel).read_bytes() == (root / rel).read_bytes()
        same_inode = os.stat(out / "data" / rel).st_ino == os.stat(root / rel).st_ino
        assert same_inode == (mode == "link")

    # the cleaned copy is clean
    from zoo.curate import inspect

    again = inspect(out / "data")
    assert again["summary"]["to_drop"] == 0 and again["leakage"] == {}


def test_clean_refuses_unsafe_destinations(tree, tmp_path):
    from zoo.curate import clean

    root = tree["root"]
    with pytest.raises(ZooError, match="outside"):
        clean(root, root / "cleaned")
    with pytest.raises(ZooError, match="outside"):
        clean(root, root)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    with pytest.raises(ZooError, match="not empty"):
        clean(root, busy)
    with pytest.raises(ZooError, match="mode"):
        clean(root, tmp_path / "new", mode="move")


def test_inspect_works_on_array_datasets_and_flat_folders(tmp_path):
    from zoo.curate import inspect
    from zoo.data import load_dataset

    report = inspect(load_dataset("synthetic:48", 24))
    assert report["layout"] == "arrays" and report["total"] == 48
    assert report["image_sizes"]["distinct"] == {"24x24": 48}

    rng = np.random.default_rng(1)
    flat = tmp_path / "flat"
    for c in CLASSES:
        for i in range(4):
            save(cell_image(rng), flat / c / f"{i}.png")
    shutil.copyfile(flat / "mono" / "0.png", flat / "lymph" / "dup.png")
    report = inspect(flat)
    assert report["layout"] == "flat" and list(report["counts"]) == ["all"]
    assert [sorted(g["files"]) for g in report["exact_duplicates"]] == [["lymph/dup.png", "mono/0.png"]]
    assert report["exact_duplicates"][0]["conflicting_labels"]


def test_threshold_validation():
    from zoo.curate import CurateConfig

    CurateConfig().validate()  # the defaults pass
    for bad, message in (
        (dict(max_hamming=40), "max_hamming"),
        (dict(near_score=0), "near_score"),
        (dict(outlier_threshold=0.5), "outlier_threshold"),
    ):
        with pytest.raises(ZooError, match=message):
            CurateConfig(**bad).validate()


def test_cli_inspect_and_clean(tree, tmp_path, capsys):
    from zoo.commands import data as data_cmd

    parser = argparse.ArgumentParser()
    data_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "inspect", "--data", str(tree["root"]), "--out", str(tmp_path / "r")])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "exact duplicate groups 2" in out and "train~val 2" in out
    args = parser.parse_args(
        [
            "data",
            "clean",
            "--data",
            str(tree["root"]),
            "--out",
            str(tmp_path / "c"),
            "--mode",
            "list",
            "--keep-outliers",
        ]
    )
    assert args.func(args) == 0
    assert "dropped 6" in capsys.readouterr().out  # 9 minus the 3 outliers kept


@pytest.mark.realdata
def test_real_pbc_validation_images_have_no_outliers(pbc_root):
    """200 real PBC images: the outlier detector must not flag genuine cells (false positives)."""
    from zoo.curate.features import colour_stats
    from zoo.curate.outliers import find_outliers

    files = sorted((pbc_root / "val").rglob("*.jpg"))[::8][:200]
    stats = np.stack([colour_stats(np.asarray(Image.open(f).convert("RGB"))) for f in files])
    flagged, _ = find_outliers(stats, np.ones(len(stats), bool))
    assert flagged == []
    planted = np.stack([colour_stats(text_image(128)), colour_stats(np.full((128, 128, 3), (30, 170, 60), np.uint8))])
    flagged, _ = find_outliers(np.vstack([stats, planted]), np.ones(len(stats) + 2, bool))
    assert {o["index"] for o in flagged} == {len(stats), len(stats) + 1}


def test_clean_link_falls_back_to_copies_across_file_systems(tree, tmp_path, monkeypatch):
    from zoo.curate import clean

    def no_links(src, dst):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    summary = clean(tree["root"], tmp_path / "out", mode="link")
    assert summary["linked"] == 0 and summary["copied"] == summary["kept"] > 0
