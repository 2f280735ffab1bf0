import hashlib
import http.server
import threading
import time

import numpy as np
import pytest
from PIL import Image

from tests.helpers import write_images
from zoo.data import load_dataset
from zoo.data.images import BadImage, decode
from zoo.errors import ZooError

CLASSES = ["basophil", "eosinophil", "lymphocyte"]


def make_tree(root, splits=None, n=6):
    for s in splits or [None]:
        for i, c in enumerate(CLASSES):
            write_images((root / s / c) if s else (root / c), n, seed=i + (0 if s is None else len(s) * 10))
    return root


def test_class_folders_without_splits_get_a_seeded_stratified_split(tmp_path):
    make_tree(tmp_path, n=10)
    (tmp_path / "basophil" / "notes.txt").write_text("not an image, ignored")
    d = load_dataset(str(tmp_path), 16, seed=3)
    assert d.class_names == CLASSES
    assert d.split_origin.startswith("stratified(seed=3")
    assert sum(len(s) for s in d.splits.values()) == 30
    for s in ("train", "val", "test"):
        assert set(d.splits[s].labels) == {0, 1, 2}  # stratified: every class everywhere
        assert d.splits[s].images.shape[1:] == (16, 16, 3) and d.splits[s].images.dtype == np.uint8
    again = load_dataset(str(tmp_path), 16, seed=3)
    assert again.fingerprint == d.fingerprint
    assert again.splits["val"].files == d.splits["val"].files
    assert load_dataset(str(tmp_path), 16, seed=4).splits["val"].files != d.splits["val"].files


def test_a_card_records_the_split_that_reloading_makes_again(tmp_path):
    """Stages that reload a member's data (ensembles, distillation, export) read the split from its card."""
    from zoo.data import split_kwargs

    make_tree(tmp_path, n=10)
    d = load_dataset(str(tmp_path), 16, seed=5, val_fraction=0.3, test_fraction=0.2)
    kw = split_kwargs(d.summary())
    assert kw == {"seed": 5, "val_fraction": 0.3, "test_fraction": 0.2}
    again = load_dataset(str(tmp_path), 24, **kw)  # another size, the same images in each split
    assert again.fingerprint == d.fingerprint
    assert all(again.splits[s].files == d.splits[s].files for s in ("train", "val", "test"))
    assert load_dataset(str(tmp_path), 16).splits["val"].files != d.splits["val"].files, "defaults split otherwise"
    assert split_kwargs({"split_origin": "given"}) == {} and split_kwargs({}) == {} and split_kwargs(None) == {}


def test_class_folders_with_split_subfolders(tmp_path):
    make_tree(tmp_path, splits=["train", "val"], n=4)
    d = load_dataset(str(tmp_path), 12)
    assert d.split_origin == "given"
    assert set(d.splits) == {"train", "val"}
    assert d.splits["train"].counts(3) == [4, 4, 4]
    assert all(f.startswith(str(tmp_path / "val")) for f in d.splits["val"].files)


def test_fingerprint_changes_with_content_not_size(tmp_path):
    make_tree(tmp_path, n=3)
    a = load_dataset(str(tmp_path), 12, val_fraction=0.0, test_fraction=0.0)
    b = load_dataset(str(tmp_path), 20, val_fraction=0.0, test_fraction=0.0)
    assert a.fingerprint == b.fingerprint
    write_images(tmp_path / "lymphocyte", 1, seed=99)
    assert load_dataset(str(tmp_path), 12, val_fraction=0.0, test_fraction=0.0).fingerprint != a.fingerprint


def test_empty_class_folder_and_corrupt_file_name_the_culprit(tmp_path):
    make_tree(tmp_path, n=3)
    (tmp_path / "monocyte").mkdir()
    with pytest.raises(ZooError, match="monocyte.*no images"):
        load_dataset(str(tmp_path), 12)
    (tmp_path / "monocyte").rmdir()
    bad = tmp_path / "basophil" / "broken.jpg"
    bad.write_text("this is text, not a JPEG")
    with pytest.raises(ZooError, match="broken.jpg"):
        load_dataset(str(tmp_path), 12)
    d = load_dataset(str(tmp_path), 12, skip_bad=True, val_fraction=0.0, test_fraction=0.0)
    assert [s["file"] for s in d.skipped] == [str(bad)]
    assert len(d.split("train")) == 9


def test_decode_converts_modes_and_refuses_garbage(tmp_path):
    import io

    def png(img):
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return buf.getvalue()

    gray = decode(png(Image.new("L", (5, 7), 128)), 8)
    assert gray.shape == (8, 8, 3) and (gray == 128).all()
    rgba = decode(png(Image.new("RGBA", (4, 4), (0, 0, 0, 0))), None)
    assert (rgba == 255).all()  # transparent composited on white
    deep = decode(png(Image.fromarray(np.full((4, 4), 65535, np.uint16))), None)
    assert (deep == 255).all()
    with pytest.raises(BadImage, match="empty"):
        decode(b"", 8)
    with pytest.raises(BadImage):
        decode(png(Image.new("RGB", (10, 10)))[:30], 8)


def _medmnist(path, n=12, size=10, channels=3, offset=0):
    rng = np.random.default_rng(0)
    arrays = {}
    for s, k in (("train", n), ("val", n // 2), ("test", n // 2)):
        shape = (k, size, size, channels) if channels > 1 else (k, size, size)
        arrays[f"{s}_images"] = rng.integers(0, 255, shape, dtype=np.uint8)
        arrays[f"{s}_labels"] = (np.arange(k) % 8 + offset).reshape(-1, 1)
    np.savez(path, **arrays)
    return path


def test_medmnist_npz(tmp_path):
    d = load_dataset(str(_medmnist(tmp_path / "bloodmnist_64.npz")), 16)
    assert d.class_names[3] == "ig" and len(d.class_names) == 8
    assert {k: len(v) for k, v in d.splits.items()} == {"train": 12, "val": 6, "test": 6}
    assert d.split("val").images.shape == (6, 16, 16, 3)
    g = load_dataset(str(_medmnist(tmp_path / "gray.npz", channels=1)), 10)
    assert g.split("train").images.shape == (12, 10, 10, 3)


def test_an2dl_npz_with_names_or_integers(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, (40, 12, 12, 3), dtype=np.uint8)
    names = np.array(["neutrophil", "platelet"] * 20)
    np.savez(tmp_path / "named.npz", images=images, labels=names)
    d = load_dataset(str(tmp_path / "named.npz"), 12)
    assert d.class_names == ["neutrophil", "platelet"]
    assert sum(len(s) for s in d.splits.values()) == 40
    np.savez(tmp_path / "ints.npz", images=images.astype(np.float32) / 255.0, labels=np.arange(40) % 4)
    d = load_dataset(str(tmp_path / "ints.npz"), 12)
    assert d.class_names == ["basophil", "eosinophil", "erythroblast", "ig"]


@pytest.mark.parametrize(
    "arrays, match",
    [
        ({"images": np.zeros((3, 4, 4, 3), np.uint8)}, "missing key 'labels'"),
        ({"images": np.zeros((3, 4, 4, 3), np.uint8), "labels": np.arange(2)}, "3 images but 2 labels"),
        ({"images": np.full((3, 4, 4, 3), np.nan, np.float32), "labels": np.arange(3)}, "NaN"),
        ({"images": np.zeros((3, 4, 4, 3), np.uint8), "labels": np.array([0.5, 1, 2])}, "whole numbers"),
        ({"images": np.zeros((3, 4, 4, 3), np.uint8), "labels": np.array([-1, 0, 1])}, "negative"),
        ({"images": np.zeros((3, 4, 4, 7), np.uint8), "labels": np.arange(3)}, "7 channels"),
        ({"pixels": np.zeros((3, 4, 4, 3), np.uint8)}, "unknown .npz layout"),
    ],
)
def test_bad_npz_files_are_named(tmp_path, arrays, match):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ZooError, match=match):
        load_dataset(str(tmp_path / "bad.npz"), 8)


def test_unknown_sources_are_clear(tmp_path):
    with pytest.raises(ZooError, match="unknown data source 'nope'.*synthetic"):
        load_dataset("nope", 16)
    (tmp_path / "file.csv").write_text("a,b")
    with pytest.raises(ZooError, match="not a folder or .npz"):
        load_dataset(str(tmp_path / "file.csv"), 16)
    with pytest.raises(ZooError, match="image size"):
        load_dataset("synthetic", 3)


def test_synthetic_is_deterministic_covers_classes_and_is_imbalanced():
    a = load_dataset("synthetic:400", 24, seed=0)
    b = load_dataset("synthetic:400", 24, seed=0)
    assert a.fingerprint == b.fingerprint
    np.testing.assert_array_equal(a.split("train").images, b.split("train").images)
    counts = np.array(a.split("train").counts(8))
    assert (counts > 0).all() and counts.max() >= 2 * counts.min()
    assert load_dataset("synthetic:400", 24, seed=1).fingerprint != a.fingerprint
    # Same images at every size: the fingerprint ignores the resize.
    assert load_dataset("synthetic:400", 32, seed=0).fingerprint == a.fingerprint


def test_synthetic_is_learnable_but_not_trivial():
    """A linear model on colour histograms beats chance by far but is far from perfect."""
    from sklearn.linear_model import LogisticRegression

    d = load_dataset("synthetic:800", 32, seed=0)

    def feats(x):
        return (
            np.concatenate([np.histogram(im[..., c], bins=8, range=(0, 255))[0] for im in x for c in range(3)]).reshape(
                len(x), -1
            )
            / x[0, ..., 0].size
        )

    tr, te = d.split("train"), d.split("test")
    acc = LogisticRegression(max_iter=2000).fit(feats(tr.images), tr.labels).score(feats(te.images), te.labels)
    assert 0.3 < acc < 0.95


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_bloodmnist_download_verifies_checksum_and_caches(tmp_path, monkeypatch):
    from zoo.data import medmnist

    served = tmp_path / "served"
    served.mkdir()
    path = _medmnist(served / "bloodmnist_64.npz")
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    monkeypatch.setitem(medmnist.BLOODMNIST, 64, ("bloodmnist_64.npz", md5))
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: _Handler(*a, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        got = medmnist.fetch_bloodmnist(64, url_base=f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
    assert got == tmp_path / "cache" / "medmnist" / "bloodmnist_64.npz"
    assert hashlib.md5(got.read_bytes()).hexdigest() == md5
    # Cached: no server needed any more.
    assert medmnist.fetch_bloodmnist(64, url_base="http://127.0.0.1:9") == got
    monkeypatch.setattr(medmnist, "fetch_bloodmnist", lambda size: got)
    assert len(load_dataset("bloodmnist:64", 16).split("train")) == 12


def test_bloodmnist_offline_is_a_fast_clear_error(tmp_path, monkeypatch):
    from zoo.data import medmnist

    monkeypatch.setenv("ZOO_CACHE", str(tmp_path))
    t = time.time()
    with pytest.raises(ZooError, match="cannot download BloodMNIST.*offline"):
        medmnist.fetch_bloodmnist(28, url_base="http://127.0.0.1:9", timeout=3)
    assert not list(tmp_path.rglob("*.npz"))
    assert time.time() - t < 30  # a guard against hangs, not a speed target


def test_bloodmnist_bad_checksum_is_refused(tmp_path, monkeypatch):
    from zoo.data import medmnist

    served = tmp_path / "served"
    served.mkdir()
    _medmnist(served / "bloodmnist.npz")
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: _Handler(*a, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(ZooError, match="MD5"):
            medmnist.fetch_bloodmnist(28, url_base=f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
    assert not list((tmp_path / "cache").rglob("*.npz"))


@pytest.mark.realdata
def test_pbc_folder_loads_with_eight_classes(pbc_root):
    d = load_dataset(str(pbc_root), 32)
    assert d.class_names == [
        "basophil",
        "eosinophil",
        "erythroblast",
        "ig",
        "lymphocyte",
        "monocyte",
        "neutrophil",
        "platelet",
    ]
    assert len(d.split("train")) == 11965 and len(d.split("val")) == 1710
