"""The bad-input corpus: every awkward file a user can hand the zoo, made on the fly.

Nothing here is a committed binary: each case builds its input under a temporary folder
(PIL, ``zlib``/``struct`` for crafted PNG headers, ``numpy.savez``, plain bytes), runs the
zoo on it and checks the *documented* behaviour (``docs/reliability.md``):

- ``convert``: the input is used after a documented conversion (grayscale → RGB, …);
- ``skip``: with ``skip_bad`` the file is left out and listed, with its reason, in the report;
- ``refuse``: a :class:`~zoo.errors.ZooError` (or ``BadImage`` from ``decode``) names the file
  or key — one line, never a traceback, never a silently wrong result.

Each case is a function ``fn(tmp: Path) -> str`` that raises ``AssertionError`` when the
behaviour is not the documented one and returns a short description of what happened.
``tests/zoo/commands/test_bad_inputs.py`` runs every case as a test; ``benchmarks/reliability.py`` runs
them all and counts crashes (any other exception). Cases that need TensorFlow import it lazily.
The module lives in ``benchmarks/`` so the benchmark imports it without reaching into ``tests/``
(tests put ``benchmarks/`` on ``sys.path`` in ``tests/conftest.py``).
"""

from __future__ import annotations

import io
import json
import os
import signal
import stat
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CLASSES = ("basophil", "eosinophil", "lymphocyte")


@dataclass(frozen=True)
class Case:
    name: str
    area: str  # image | folder | npz | config | onnx | run
    behaviour: str  # convert | skip | refuse | accept
    documented: str  # the row of the table in docs/reliability.md
    fn: Callable[[Path], str]
    needs_tf: bool = False
    covered_by: str | None = None  # an existing test elsewhere runs this exact check; the benchmark still counts it


CASES: list[Case] = []


def case(name: str, area: str, behaviour: str, documented: str, needs_tf: bool = False, covered_by: str | None = None):
    def register(fn: Callable[[Path], str]) -> Callable[[Path], str]:
        CASES.append(Case(name, area, behaviour, documented, fn, needs_tf, covered_by))
        return fn

    return register


# ----------------------------------------------------------------------------- helpers
def refused(fn: Callable[[], object], *contains: str, exc: type[BaseException] | None = None) -> str:
    """Run ``fn``; it must raise ``exc`` (default ZooError) whose one-line message contains ``contains``."""
    from zoo.errors import ZooError

    exc = exc or ZooError
    try:
        fn()
    except exc as e:
        msg = str(e)
        assert "\n" not in msg.strip(), f"message is not one line: {msg!r}"
        for part in contains:
            assert part.lower() in msg.lower(), f"message {msg!r} does not mention {part!r}"
        return f"{type(e).__name__}: {msg}"
    raise AssertionError("accepted; expected a refusal")


def image_bytes(img, fmt: str = "PNG", **save) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save)
    return buf.getvalue()


def rgb_pattern(w: int = 24, h: int = 24, seed: int = 0) -> np.ndarray:
    """A smooth colourful pattern (JPEG-friendly, so lossy round trips stay close)."""
    y, x = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(0.5, 2.0, 2)
    r = 127 + 100 * np.sin(x / (3 * a))
    g = 127 + 100 * np.cos(y / (3 * b))
    bl = 127 + 60 * np.sin((x + y) / 5)
    return np.stack([r, g, bl], -1).clip(0, 255).astype(np.uint8)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def crafted_png(
    width: int, height: int, bit_depth: int, color_type: int, rows: bytes | None = None, row_bytes: int | None = None
) -> bytes:
    """A PNG written by hand: huge declared sizes cost only their (tiny) compressed zeros."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    if rows is None:
        comp = zlib.compressobj(9)
        line = b"\x00" * (1 + int(row_bytes or 0))
        parts = [comp.compress(line) for _ in range(height)]
        rows = b"".join(parts) + comp.flush()
    else:
        rows = zlib.compress(rows, 9)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", rows) + _png_chunk(b"IEND", b"")


def write_tree(root: Path, splits=(None,), classes=CLASSES, n: int = 4, size: int = 16) -> Path:
    from PIL import Image

    for s_i, s in enumerate(splits):
        for c_i, c in enumerate(classes):
            d = root / s / c if s else root / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(rgb_pattern(size, size, seed=100 * s_i + 10 * c_i + i)).save(d / f"img{i}.png")
    return root


def _decode(data: bytes, size: int | None = 16):
    from zoo.data.images import decode

    return decode(data, size, "case")


def _bad(data: bytes, *contains: str) -> str:
    from zoo.data.images import BadImage

    return refused(lambda: _decode(data), *contains, exc=BadImage)


def _load(root: Path, **kw):
    from zoo.data import load_dataset

    kw.setdefault("val_fraction", 0.0)
    kw.setdefault("test_fraction", 0.0)
    return load_dataset(str(root), 16, **kw)


def _skip_and_refuse(
    tmp: Path, bad_name: str | bytes, data: bytes | None, *contains: str, link_to: str | bytes | None = None
) -> str:
    """A class-folder tree with one bad file: refused naming it, or skipped and reported with skip_bad."""
    root = write_tree(tmp / "tree")
    folder = os.fsencode(root / "basophil")
    target = os.path.join(folder, os.fsencode(bad_name))
    if link_to is not None:
        os.symlink(os.fsencode(link_to), target)
    else:
        with open(target, "wb") as fh:
            fh.write(data or b"")
    shown = os.fsdecode(target)
    msg = refused(lambda: _load(root), shown, *contains)
    d = _load(root, skip_bad=True)
    assert [s["file"] for s in d.skipped] == [shown], d.skipped
    assert len(d.split("train")) == 4 * len(CLASSES), "good files must all load"
    summary = d.summary()
    assert summary["skipped"] == d.skipped and summary["skipped_files"] == 1, "the report lists each skipped file"
    json.dumps(summary)  # the report is JSON-serialisable, whatever the file name
    return msg + " | skip_bad: skipped and reported"


# ============================================================================= images
@case(
    "zero-byte file",
    "image",
    "skip/refuse",
    "`BadImage: empty file (0 bytes)`; in a folder: refused naming the file, or skipped and reported with `skip_bad`",
)
def _zero_byte(tmp: Path) -> str:
    _bad(b"", "empty")
    return _skip_and_refuse(tmp, "empty.jpg", b"", "empty")


@case(
    "truncated JPEG",
    "image",
    "skip/refuse",
    "`BadImage: corrupt or truncated image`; refused naming the file / skipped with `skip_bad`",
)
def _truncated_jpeg(tmp: Path) -> str:
    from PIL import Image

    data = image_bytes(Image.fromarray(rgb_pattern(64, 64)), "JPEG", quality=90)
    _bad(data[: len(data) // 2], "truncated")
    return _skip_and_refuse(tmp, "cut.jpg", data[: len(data) // 2], "truncated")


@case(
    "truncated PNG",
    "image",
    "skip/refuse",
    "`BadImage: corrupt or truncated image`; refused naming the file / skipped with `skip_bad`",
)
def _truncated_png(tmp: Path) -> str:
    from PIL import Image

    data = image_bytes(Image.fromarray(rgb_pattern(64, 64)))
    _bad(data[: len(data) // 2])
    return _skip_and_refuse(tmp, "cut.png", data[: len(data) // 2])


@case(
    "text file renamed .jpg",
    "image",
    "skip/refuse",
    "`BadImage: not a readable image`; refused naming the file / skipped with `skip_bad`",
)
def _text_as_jpg(tmp: Path) -> str:
    data = b"Patient notes, definitely not a JPEG.\n" * 20
    _bad(data, "not a readable image")
    return _skip_and_refuse(tmp, "notes.jpg", data, "not a readable image")


@case("PNG content named .jpg", "image", "convert", "decoded by content, not by extension")
def _png_named_jpg(tmp: Path) -> str:
    from PIL import Image

    pix = rgb_pattern(16, 16)
    out = _decode(image_bytes(Image.fromarray(pix)), None)
    assert np.array_equal(out, pix)
    return "decoded losslessly"


@case("grayscale (L) PNG and JPEG", "image", "convert", "converted to RGB (the gray value in all three channels)")
def _grayscale(tmp: Path) -> str:
    from PIL import Image

    gray = rgb_pattern(16, 16)[..., 0]
    for fmt in ("PNG", "JPEG"):
        out = _decode(image_bytes(Image.fromarray(gray, mode="L"), fmt), None)
        assert out.shape == (16, 16, 3) and out.dtype == np.uint8
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
        tol = 0 if fmt == "PNG" else 12
        assert np.abs(out[..., 0].astype(int) - gray).max() <= tol
    return "RGB with equal channels"


@case(
    "RGBA PNG (transparency)",
    "image",
    "convert",
    "converted to RGB; transparent pixels composited on white (bright microscope background)",
)
def _rgba(tmp: Path) -> str:
    from PIL import Image

    arr = np.zeros((8, 8, 4), np.uint8)
    arr[..., 0] = 200
    arr[:, :4, 3] = 255  # left half opaque red, right half fully transparent
    out = _decode(image_bytes(Image.fromarray(arr, mode="RGBA")), None)
    assert out.shape == (8, 8, 3)
    assert (out[:, :4] == [200, 0, 0]).all() and (out[:, 4:] == 255).all()
    return "opaque pixels kept, transparent ones white"


@case("gray + alpha (LA) PNG", "image", "convert", "converted to RGB on white")
def _la(tmp: Path) -> str:
    from PIL import Image

    arr = np.zeros((6, 6, 2), np.uint8)
    arr[..., 0] = 50
    arr[:3, :, 1] = 255
    out = _decode(image_bytes(Image.fromarray(arr, mode="LA")), None)
    assert (out[:3] == 50).all() and (out[3:] == 255).all()
    return "composited on white"


@case("16-bit grayscale PNG", "image", "convert", "scaled to 8 bits (brightest pixel → 255), then RGB")
def _png16(tmp: Path) -> str:
    from PIL import Image

    arr = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    out = _decode(image_bytes(Image.fromarray(arr)), None)
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    assert out.max() == 255 and out.min() == 0
    assert (np.diff(out[..., 0].reshape(-1).astype(int)) >= 0).all(), "order of intensities is kept"
    return "8-bit RGB, monotone"


@case("16-bit RGB PNG (48 bpp)", "image", "convert", "reduced to 8 bits per channel (high byte)")
def _png48(tmp: Path) -> str:
    h = w = 4
    vals = (np.arange(h * w * 3, dtype=np.uint16).reshape(h, w, 3) * 1300).astype(">u2")
    rows = b"".join(b"\x00" + vals[i].tobytes() for i in range(h))
    out = _decode(crafted_png(w, h, 16, 2, rows=rows), None)
    assert out.shape == (h, w, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - (vals.astype(int) >> 8)).max() <= 1
    return "8-bit RGB"


@case("CMYK JPEG", "image", "convert", "converted to RGB (colours match the RGB original within JPEG error)")
def _cmyk(tmp: Path) -> str:
    from PIL import Image

    pix = rgb_pattern(32, 32)
    data = image_bytes(Image.fromarray(pix).convert("CMYK"), "JPEG", quality=95)
    out = _decode(data, None)
    err = float(np.abs(out.astype(float) - pix).mean())
    assert out.shape == (32, 32, 3) and err < 12, f"mean error {err:.1f} (inverted or wrong colours?)"
    return f"RGB, mean abs error {err:.1f}"


@case(
    "palette PNG (with and without transparency)",
    "image",
    "convert",
    "converted to RGB; transparent palette entries on white",
)
def _palette(tmp: Path) -> str:
    from PIL import Image

    img = Image.new("P", (6, 6), 0)
    img.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    img.paste(1, (0, 0, 3, 6))
    out = _decode(image_bytes(img), None)
    assert (out[:, :3] == [200, 100, 50]).all() and (out[:, 3:] == [10, 20, 30]).all()
    out_t = _decode(image_bytes(img, transparency=0), None)
    assert (out_t[:, 3:] == 255).all() and (out_t[:, :3] == [200, 100, 50]).all()
    return "exact palette colours; transparent entry white"


@case("float32 TIFF (mode F)", "image", "convert", "min..max stretched to 0..255, then RGB")
def _float_tiff(tmp: Path) -> str:
    from PIL import Image

    arr = np.linspace(-1, 3, 36, dtype=np.float32).reshape(6, 6)
    out = _decode(image_bytes(Image.fromarray(arr, mode="F"), "TIFF"), None)
    assert out.min() == 0 and out.max() == 255
    return "stretched to 0..255"


@case("1×1 and 1×N images", "image", "skip/refuse", "`BadImage: too small to classify` (refused / skipped)")
def _tiny(tmp: Path) -> str:
    from PIL import Image

    _bad(image_bytes(Image.new("RGB", (1, 1), (9, 9, 9))), "too small")
    _bad(image_bytes(Image.new("RGB", (1, 40), (9, 9, 9))), "too small")
    return _skip_and_refuse(tmp, "dot.png", image_bytes(Image.new("RGB", (1, 1))), "too small")


@case(
    "10,000×10,000 PNG (decompression bomb)",
    "image",
    "skip/refuse",
    "refused from the header, before decoding: `above the 50,000,000-pixel limit`",
)
def _bomb(tmp: Path) -> str:
    data = crafted_png(10_000, 10_000, 1, 0, row_bytes=1250)  # valid 1-bit PNG, ~12 kB on disk
    assert len(data) < 100_000
    msg = _bad(data, "pixel limit")
    header_only = crafted_png(100_000, 100_000, 8, 2, rows=b"\x00" * 10)  # 10^10 pixels declared, data missing
    _bad(header_only)
    return msg + " | " + _skip_and_refuse(tmp, "bomb.png", data, "pixel limit")


@case(
    "EXIF-rotated JPEG",
    "image",
    "convert",
    "EXIF orientation applied (a 16×8 photo tagged 'rotate 90°' decodes as 8 wide × 16 tall)",
)
def _exif(tmp: Path) -> str:
    from PIL import Image

    arr = np.zeros((8, 16, 3), np.uint8)
    arr[:, :8] = (220, 30, 30)  # left half red
    arr[:, 8:] = (30, 30, 220)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    out = _decode(image_bytes(Image.fromarray(arr), "JPEG", quality=95, exif=exif.tobytes()), None)
    assert out.shape == (16, 8, 3), out.shape
    top, bottom = out[:6].mean((0, 1)), out[10:].mean((0, 1))
    assert top[0] > 150 and bottom[2] > 150, (top, bottom)  # left side ends up on top
    return "rotated: 16×8 → 8×16, red on top"


@case("JPEG with corrupt EXIF block", "image", "convert", "pixels decoded; the unreadable EXIF is ignored")
def _bad_exif(tmp: Path) -> str:
    from PIL import Image

    data = image_bytes(Image.fromarray(rgb_pattern(16, 16)), "JPEG", quality=95)
    payload = b"Exif\x00\x00" + b"MM\x00\x2a\x00\x00\x00\x08" + b"\xff\x07\x01\x12" * 30
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    out = _decode(data[:2] + app1 + data[2:], None)
    assert out.shape == (16, 16, 3)
    return "decoded"


# ============================================================================= folders
@case(
    "non-UTF-8 file name",
    "folder",
    "accept",
    "loaded; the name is kept byte-exact (surrogate escapes) in file lists, reports and cards",
)
def _non_utf8_name(tmp: Path) -> str:
    from PIL import Image

    root = write_tree(tmp / "tree", n=4)
    name = os.path.join(os.fsencode(root / "eosinophil"), b"cell_\xff\xfe_latin1_\xe9.png")
    with open(name, "wb") as fh:
        fh.write(image_bytes(Image.fromarray(rgb_pattern(16, 16, 7))))
    d = _load(root)
    files = d.split("train").files
    assert os.fsdecode(name) in files and len(files) == 13
    assert os.path.exists(os.fsencode(os.fsdecode(name))), "the recorded name opens the same file"
    # a bad file with such a name is reported, and the report can be written as text and JSON
    msg = _skip_and_refuse(tmp / "bad", b"broken_\xff.jpg", b"garbage", "not a readable image")
    from zoo.artifacts import write_json, write_text

    write_text(tmp / "report.txt", f"{msg}\n")
    write_json(tmp / "report.json", {"files": files})
    return "loaded (13 images) | " + msg


@case(
    "non-UTF-8 class folder name",
    "folder",
    "refuse",
    "refused naming the folder: class names go into cards, plots and ONNX metadata, which need text",
)
def _non_utf8_class(tmp: Path) -> str:
    root = write_tree(tmp / "tree", n=2)
    os.rename(root / "basophil", os.path.join(os.fsencode(root), b"baso\xffphil"))
    return refused(lambda: _load(root), "UTF-8", "baso")


@case(
    "symlink to itself (x.jpg -> x.jpg)",
    "folder",
    "skip/refuse",
    "`cannot read file (Too many levels of symbolic links)`: refused naming it / skipped",
)
def _self_link(tmp: Path) -> str:
    root = tmp / "tree" / "basophil"
    return _skip_and_refuse(tmp, "loop.jpg", None, "symbolic", link_to=str(root / "loop.jpg"))


@case(
    "dangling symlink",
    "folder",
    "skip/refuse",
    "`cannot read file (No such file or directory)`: refused naming it / skipped",
)
def _dangling(tmp: Path) -> str:
    return _skip_and_refuse(tmp, "gone.png", None, "cannot read", link_to=str(tmp / "does-not-exist.png"))


@case(
    "directory symlink loop (sub -> ..)",
    "folder",
    "accept",
    "not followed (no infinite walk); the images around it load once",
)
def _dir_loop(tmp: Path) -> str:
    root = write_tree(tmp / "tree", n=3)
    os.symlink(root / "basophil", root / "basophil" / "again")
    os.symlink(root, root / "lymphocyte" / "up")
    d = _load(root)
    assert len(d.split("train")) == 9 and d.class_names == list(CLASSES)
    return "9 images, each once"


@case("empty class folder", "folder", "refuse", "refused naming the folder: `class folder has no images`")
def _empty_class(tmp: Path) -> str:
    root = write_tree(tmp / "tree", n=2)
    (root / "monocyte").mkdir()
    (root / "monocyte" / "readme.txt").write_text("nothing here")
    return refused(lambda: _load(root), "monocyte", "no images")


@case(
    "class whose every file is unreadable (skip_bad)",
    "folder",
    "refuse",
    "refused naming the class: a class with no usable image is never kept silently",
)
def _all_bad_class(tmp: Path) -> str:
    root = write_tree(tmp / "tree", n=2)
    (root / "monocyte").mkdir()
    (root / "monocyte" / "a.jpg").write_bytes(b"")
    (root / "monocyte" / "b.jpg").write_bytes(b"not an image")
    return refused(lambda: _load(root, skip_bad=True), "monocyte", "no usable")


@case(
    "class folder in train but not in val",
    "folder",
    "accept",
    "loaded with every class (val counts 0 for it); a warning names the split and class",
)
def _train_only_class(tmp: Path) -> str:
    import logging

    root = write_tree(tmp / "tree", splits=("train", "val"), n=2)
    import shutil

    shutil.rmtree(root / "val" / "lymphocyte")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    h = Keep(logging.WARNING)
    logger = logging.getLogger("zoo.data")
    level = logger.level
    logger.addHandler(h)
    logger.setLevel(logging.WARNING)  # whatever the caller configured for "zoo"
    try:
        d = _load(root)
    finally:
        logger.removeHandler(h)
        logger.setLevel(level)
    assert d.class_names == list(CLASSES)
    assert d.summary()["counts"]["val"] == [2, 2, 0]
    assert any("lymphocyte" in r.getMessage() and "val" in r.getMessage() for r in records), "warning names the class"
    return "classes kept, val count 0, warning logged"


@case(
    "class folder in val but not in train", "folder", "refuse", "refused: `class(es) [...] have no folder in 'train'`"
)
def _val_only_class(tmp: Path) -> str:
    root = write_tree(tmp / "tree", splits=("train", "val"), n=2)
    write_tree(root / "val", classes=("platelet",), n=2)
    return refused(lambda: _load(root), "platelet", "train")


@case("hidden and non-image files", "folder", "accept", "ignored (`.DS_Store`, `Thumbs.db`, `notes.txt`, `._x.jpg`)")
def _hidden(tmp: Path) -> str:
    root = write_tree(tmp / "tree", n=2)
    (root / "basophil" / ".DS_Store").write_bytes(b"\x00\x01")
    (root / "basophil" / "._img0.jpg").write_bytes(b"AppleDouble")
    (root / "basophil" / "Thumbs.db").write_bytes(b"\x00")
    (root / "basophil" / "notes.txt").write_text("hi")
    (root / ".cache").mkdir()
    assert len(_load(root).split("train")) == 6
    return "6 images, extras ignored"


@case(
    "unreadable file (no permission)",
    "folder",
    "skip/refuse",
    "`cannot read file (Permission denied)`: refused naming it / skipped",
)
def _no_permission(tmp: Path) -> str:
    if os.geteuid() == 0:
        return "not applicable as root (root reads every file)"
    root = write_tree(tmp / "tree")
    p = root / "basophil" / "locked.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(p)
    p.chmod(0)
    try:
        msg = refused(lambda: _load(root), "locked.png", "permission")
        assert len(_load(root, skip_bad=True).skipped) == 1
        return msg
    finally:
        p.chmod(stat.S_IRUSR | stat.S_IWUSR)


# ============================================================================= npz
def _npz(tmp: Path, name: str = "d.npz", **arrays) -> Path:
    p = tmp / name
    np.savez(p, **arrays)
    return p


def _imgs(n=12, size=8, dtype=np.uint8):
    return np.random.default_rng(0).integers(0, 255, (n, size, size, 3)).astype(dtype)


def _load_npz(p: Path):
    from zoo.data import load_dataset

    return load_dataset(str(p), 8)


@case("npz with missing keys", "npz", "refuse", "refused naming the missing key and the keys present")
def _npz_missing(tmp: Path) -> str:
    refused(lambda: _load_npz(_npz(tmp, "a.npz", images=_imgs())), "labels")
    p = _npz(tmp, "b.npz", train_images=_imgs(), val_images=_imgs(4))
    return refused(lambda: _load_npz(p), "train_labels", "has:")


@case("npz with mismatched lengths", "npz", "refuse", "refused: `12 images but 11 labels`")
def _npz_lengths(tmp: Path) -> str:
    return refused(lambda: _load_npz(_npz(tmp, images=_imgs(), labels=np.arange(11) % 3)), "12 images but 11 labels")


@case(
    "npz with NaN pixels or NaN labels",
    "npz",
    "refuse",
    "refused: `images contain NaN or infinite values` / `labels must be whole numbers`",
)
def _npz_nan(tmp: Path) -> str:
    x = _imgs(dtype=np.float32)
    x[0, 0, 0, 0] = np.nan
    refused(lambda: _load_npz(_npz(tmp, "a.npz", images=x, labels=np.arange(12) % 3)), "NaN")
    y = (np.arange(12) % 3).astype(float)
    y[3] = np.nan
    return refused(lambda: _load_npz(_npz(tmp, "b.npz", images=_imgs(), labels=y)), "NaN")


@case(
    "npz with wrong dtypes (complex, strings as pixels, float labels with fractions)",
    "npz",
    "refuse",
    "refused naming the array and its dtype",
)
def _npz_dtype(tmp: Path) -> str:
    refused(
        lambda: _load_npz(_npz(tmp, "a.npz", images=_imgs().astype(np.complex64), labels=np.arange(12) % 3)), "dtype"
    )
    refused(lambda: _load_npz(_npz(tmp, "b.npz", images=np.array(["x"] * 12), labels=np.arange(12) % 3)), "dtype")
    return refused(lambda: _load_npz(_npz(tmp, "c.npz", images=_imgs(), labels=np.arange(12) / 2)), "whole numbers")


@case(
    "npz with labels out of range",
    "npz",
    "refuse",
    "refused: negative labels, labels ≥ the number of `class_names`, or more than 1000 implied classes",
)
def _npz_range(tmp: Path) -> str:
    refused(lambda: _load_npz(_npz(tmp, "a.npz", images=_imgs(), labels=np.arange(12) % 3 - 1)), "negative")
    names = np.array(["a", "b"])
    refused(
        lambda: _load_npz(_npz(tmp, "b.npz", images=_imgs(), labels=np.arange(12) % 3, class_names=names)),
        "out of range",
    )
    big = np.arange(12) % 3
    big[5] = 10**12
    return refused(lambda: _load_npz(_npz(tmp, "c.npz", images=_imgs(), labels=big)), "class_names")


@case("npz holding pickled objects", "npz", "refuse", "refused (`allow_pickle=False`): nothing is unpickled")
def _npz_pickle(tmp: Path) -> str:
    p = tmp / "obj.npz"
    np.savez(p, images=np.array([{"x": 1}] * 12, dtype=object), labels=np.arange(12) % 3)
    return refused(lambda: _load_npz(p), "objects")


@case("file named .npz that is not an archive", "npz", "refuse", "refused: `not a readable .npz archive`")
def _npz_garbage(tmp: Path) -> str:
    p = tmp / "fake.npz"
    p.write_bytes(b"PK\x03\x04 not really a zip")
    refused(lambda: _load_npz(p), "not a readable")
    (tmp / "empty.npz").write_bytes(b"")
    return refused(lambda: _load_npz(tmp / "empty.npz"), "empty.npz")


@case(
    "npz with wrong image shapes (N×H, zero images)",
    "npz",
    "refuse",
    "refused naming the shape or channel count / `'images' holds no images`",
)
def _npz_shape(tmp: Path) -> str:
    refused(
        lambda: _load_npz(_npz(tmp, "a.npz", images=np.zeros((12, 8), np.uint8), labels=np.arange(12) % 3)), "shape"
    )
    refused(
        lambda: _load_npz(_npz(tmp, "b.npz", images=np.zeros((12, 8, 8, 5), np.uint8), labels=np.arange(12) % 3)),
        "channels",
    )
    return refused(
        lambda: _load_npz(_npz(tmp, "c.npz", images=np.zeros((0, 8, 8, 3), np.uint8), labels=np.zeros(0, int))), "no"
    )


@case(
    "npz one-hot labels and channels-first images",
    "npz",
    "convert",
    "converted: one-hot → class index, (N,3,H,W) → (N,H,W,3), 1 channel → RGB",
)
def _npz_convert(tmp: Path) -> str:
    x = _imgs(12, 8).transpose(0, 3, 1, 2)
    y = np.eye(3, dtype=np.float32)[np.arange(12) % 3]
    d = _load_npz(_npz(tmp, images=x, labels=y))
    assert sum(len(s) for s in d.splits.values()) == 12 and d.num_classes == 3
    assert d.splits["train"].images.shape[1:] == (8, 8, 3)
    return "loaded, 3 classes"


# ============================================================================= config
def _config(tmp: Path, text: str | bytes):
    from zoo import config

    p = tmp / "c.toml"
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    return config.load(p)


@case(
    "TOML config with unknown keys",
    "config",
    "refuse",
    "refused naming the key and the allowed ones: `unknown key(s) ['epoch'] in [train]`",
)
def _cfg_unknown(tmp: Path) -> str:
    refused(lambda: _config(tmp, "[train]\nepoch = 3\n"), "epoch", "train")
    return refused(lambda: _config(tmp, "[[members]]\nmember = 'custom_cnn'\ncolour = 'red'\n"), "colour")


@case(
    "TOML config with wrong types or out-of-range values",
    "config",
    "refuse",
    "refused naming the key: `train.epochs must be an integer`, `data.val_fraction must be in 0..1`",
)
def _cfg_types(tmp: Path) -> str:
    refused(lambda: _config(tmp, "[train]\nepochs = 'ten'\n"), "train.epochs")
    refused(lambda: _config(tmp, "[data]\nimage_size = 4.5\n"), "image_size")
    refused(lambda: _config(tmp, "members = 3\n"), "members")
    refused(lambda: _config(tmp, "[data]\nval_fraction = 1.5\n"), "val_fraction")
    refused(lambda: _config(tmp, "[train]\nlabel_smoothing = -0.1\n"), "label_smoothing")
    return refused(lambda: _config(tmp, "[data]\nimage_size = 0\n"), "image_size")


@case("invalid or non-UTF-8 TOML", "config", "refuse", "refused: `invalid TOML (…line N…)`")
def _cfg_syntax(tmp: Path) -> str:
    refused(lambda: _config(tmp, "[train\nepochs = 3"), "invalid TOML")
    return refused(lambda: _config(tmp, b"name = '\xff\xfe'\n"), "invalid TOML")


# ============================================================================= onnx
def tiny_onnx(path: Path, classes=CLASSES, size: int = 8) -> Path:
    """A minimal valid ONNX classifier (global average → MatMul → Softmax), without TensorFlow."""
    import onnx
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [3, len(classes)], np.linspace(-1, 1, 3 * len(classes)).tolist())
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["m"], axes=[1, 2], keepdims=0),
        helper.make_node("MatMul", ["m", "w"], ["z"]),
        helper.make_node("Softmax", ["z"], ["probs"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", size, size, 3])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", len(classes)])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


@case(
    "ONNX file truncated / empty / not ONNX",
    "onnx",
    "refuse",
    "refused: `not a valid ONNX model (corrupt or truncated?)`, `empty file`",
)
def _onnx_truncated(tmp: Path) -> str:
    from export.predictor import load

    good = tiny_onnx(tmp / "good.onnx").read_bytes()
    (tmp / "cut.onnx").write_bytes(good[: len(good) // 2])
    (tmp / "zero.onnx").write_bytes(b"")
    (tmp / "text.onnx").write_text("not a model")
    refused(lambda: load(tmp / "zero.onnx", "cpu"), "empty")
    refused(lambda: load(tmp / "text.onnx", "cpu"), "not a valid ONNX")
    return refused(lambda: load(tmp / "cut.onnx", "cpu"), "cut.onnx", "not a valid ONNX")


@case(
    "ONNX file in an export folder changed after export",
    "onnx",
    "refuse",
    "refused: `file 'model.onnx' was modified after the card was written` (folder or file path)",
)
def _onnx_tampered(tmp: Path) -> str:
    from export.predictor import load
    from zoo.artifacts import write_card

    folder = tmp / "export"
    tiny_onnx(folder / "model.onnx")
    write_card(folder, {"kind": "export", "name": "tiny", "classes": list(CLASSES), "input": {"image_size": 8}})
    other = tiny_onnx(tmp / "other.onnx", classes=("a", "b", "c", "d")).read_bytes()
    (folder / "model.onnx").write_bytes(other)
    refused(lambda: load(folder, "cpu"), "model.onnx", "modified")
    return refused(lambda: load(folder / "model.onnx", "cpu"), "model.onnx", "modified")


# ============================================================================= run folders
def fake_member(
    folder: Path, name: str = "m", size: int = 16, classes=CLASSES, seed: int = 0, model: bool = True
) -> Path:
    """A complete member run folder without training (tiny custom_cnn unless ``model=False``, stored probabilities)."""
    from zoo.artifacts import write_card, write_probs

    folder.mkdir(parents=True, exist_ok=True)
    if model:
        from zoo.registry import create_model

        create_model("custom_cnn", len(classes), size, widths=(8, 16), depths=(1, 1), stem_width=8).save(
            folder / "model.keras"
        )
    rng = np.random.default_rng(seed)
    for split, n in (("val", 24), ("test", 24)):
        y = (np.arange(n) % len(classes)).astype(np.int64)
        p = rng.dirichlet(np.ones(len(classes)), n)
        p[np.arange(n), y] += 1.0  # an informative member, so fitted ensemble weights are well defined
        p = (p / p.sum(1, keepdims=True)).astype(np.float32)
        write_probs(folder, split, p, y)
    write_card(
        folder,
        {
            "kind": "member",
            "name": name,
            "member": "custom_cnn",
            "params": {"widths": [8, 16], "depths": [1, 1], "stem_width": 8},
            "classes": list(classes),
            **({"model_file": "model.keras"} if model else {}),
            "input": {
                "image_size": size,
                "channels": 3,
                "range": [0, 255],
                "color": "RGB",
                "preprocessing": "inside model",
            },
            "data": {"source": "synthetic:64", "fingerprint": "abc"},
            # Real cards record their training seed; without it two fakes written in the same second
            # would share an identity (the card's "created" is the only other difference).
            "training": {"config": {"seed": seed}},
            "metrics": {},
        },
    )
    return folder


@case(
    "run folder half-written (no card.json)",
    "run",
    "refuse",
    "refused by every later stage: `incomplete artifact folder (no card.json; the stage that writes it did not finish)`",
    needs_tf=True,
)
def _half_written(tmp: Path) -> str:
    from zoo.runs import load_model, load_probs

    run = fake_member(tmp / "run")
    (run / "card.json").unlink()
    refused(lambda: load_model(run), "incomplete")
    refused(lambda: load_probs(run, "val"), "incomplete")
    from ensemble.members import open_member
    from export.sources import open_source

    refused(lambda: open_member(run), "incomplete")
    return refused(lambda: open_source(run), "incomplete")


@case("run folder with a truncated card.json", "run", "refuse", "refused: `card.json: not valid JSON`", needs_tf=False)
def _bad_card(tmp: Path) -> str:
    from zoo.artifacts import read_card, write_card

    (tmp / "run").mkdir()
    (tmp / "run" / "x.bin").write_bytes(b"x")
    write_card(tmp / "run", {"kind": "member", "name": "x", "classes": ["a", "b"], "input": {"image_size": 8}})
    text = (tmp / "run" / "card.json").read_bytes()
    (tmp / "run" / "card.json").write_bytes(text[: len(text) // 2])
    return refused(lambda: read_card(tmp / "run"), "not valid JSON")


@case(
    "model.keras truncated (card re-sealed to match)",
    "run",
    "refuse",
    "refused: `cannot load Keras model`",
    needs_tf=True,
)
def _keras_truncated(tmp: Path) -> str:
    from zoo.artifacts import read_card, write_card
    from zoo.runs import load_model

    run = fake_member(tmp / "run")
    data = (run / "model.keras").read_bytes()
    (run / "model.keras").write_bytes(data[: len(data) // 2])
    refused(lambda: load_model(run), "model.keras", "modified")
    write_card(run, read_card(run, verify=False))  # hashes now match the broken file
    return refused(lambda: load_model(run), "cannot load Keras model")


@case(
    "card 'model_file' / 'files' pointing outside the folder",
    "run",
    "refuse",
    "refused: `path '../…' escapes its folder` (absolute paths: `must be relative`)",
    needs_tf=True,
)
def _escape(tmp: Path) -> str:
    from zoo.artifacts import read_card, write_json
    from zoo.runs import load_model

    run = fake_member(tmp / "run")
    fake_member(tmp / "elsewhere", name="other")
    card = read_card(run)
    write_json(run / "card.json", {**card, "model_file": "../elsewhere/model.keras"})
    refused(lambda: load_model(run), "escapes")
    write_json(run / "card.json", {**card, "model_file": str(tmp / "elsewhere" / "model.keras")})
    refused(lambda: load_model(run), "relative")
    write_json(run / "card.json", {**card, "files": {**card["files"], "../elsewhere/model.keras": "0" * 64}})
    return refused(lambda: read_card(run), "escapes")


@case(
    "model.keras with a Lambda layer (arbitrary Python)",
    "run",
    "refuse",
    "refused: loaded with `safe_mode=True`, so `cannot load Keras model … Lambda … safe_mode`",
    needs_tf=True,
)
def _lambda_model(tmp: Path) -> str:
    import keras

    from zoo.artifacts import read_card, write_card
    from zoo.runs import load_model

    run = fake_member(tmp / "run")
    card = read_card(run)
    evil = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Lambda(lambda x: x * 1.0),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(len(CLASSES), activation="softmax"),
        ]
    )
    evil.save(run / "model.keras")
    write_card(run, card)  # a consistent card: only safe_mode stands between the file and code execution
    return refused(lambda: load_model(run), "cannot load Keras model", "safe_mode")


# ============================================================================= tampering
def _ensemble(tmp: Path, members: int = 2) -> tuple[Path, list[Path]]:
    from ensemble import EnsembleConfig, build_ensemble

    runs = [fake_member(tmp / "members" / f"m{i}", name=f"m{i}", seed=i, model=False) for i in range(members)]
    # min_weight=0: every member stays in ensemble.json (a fitted vote would drop a member weighted ~0)
    cfg = EnsembleConfig(folds=3, min_weight=0.0)
    return build_ensemble(runs, tmp / "ensembles" / "vote", config=cfg), runs


@case(
    "member model.keras changed after training",
    "tamper",
    "refuse",
    "refused by `zoo.runs.load_model`: `file 'model.keras' was modified after the card was written`",
    needs_tf=True,
)
def _tamper_member_model(tmp: Path) -> str:
    from zoo.runs import load_model

    run = fake_member(tmp / "run")
    other = fake_member(tmp / "other", seed=3)
    (run / "model.keras").write_bytes((other / "model.keras").read_bytes() + b"\0")
    return refused(lambda: load_model(run), "model.keras", "modified")


@case(
    "ensemble member's stored probabilities changed",
    "tamper",
    "refuse",
    "refused by `ensemble.load`: the member's file hash",
    covered_by="tests/ensemble/test_ensemble.py::test_tampered_member_file_is_refused",
)
def _tamper_member_probs(tmp: Path) -> str:
    from ensemble import load
    from zoo.artifacts import write_npy

    ens, runs = _ensemble(tmp)
    p = np.load(runs[1] / "probs" / "val.npy")
    write_npy(runs[1] / "probs" / "val.npy", p[::-1].copy())
    return refused(lambda: load(ens), "modified")


@case(
    "ensemble member re-carded after a change",
    "tamper",
    "refuse",
    "refused: `member '…' changed since the ensemble was built` (card sha256 pinned in ensemble.json)",
    covered_by="tests/ensemble/test_ensemble.py::test_member_recarded_after_change_is_refused",
)
def _tamper_member_recarded(tmp: Path) -> str:
    from ensemble import load
    from zoo.artifacts import read_card, write_card, write_npy

    ens, runs = _ensemble(tmp)
    card = read_card(runs[0])
    write_npy(runs[0] / "probs" / "test.npy", np.full((24, len(CLASSES)), 1 / len(CLASSES), np.float32))
    write_card(runs[0], {k: v for k, v in card.items() if k != "files"})
    return refused(lambda: load(ens), "changed since the ensemble was built")


@case(
    "ensemble.json edited (weights)",
    "tamper",
    "refuse",
    "refused: `file 'ensemble.json' was modified after the card was written`",
)
def _tamper_ensemble_json(tmp: Path) -> str:
    from ensemble import load
    from zoo.artifacts import write_json

    ens, _ = _ensemble(tmp)
    spec = json.loads((ens / "ensemble.json").read_text())
    # An edit that changes the file whatever the fit chose (a fit may itself land on [1, 0]).
    spec["weights"] = [0.0, 1.0] if spec["weights"] == [1.0, 0.0] else [1.0, 0.0]
    write_json(ens / "ensemble.json", spec)
    return refused(lambda: load(ens), "ensemble.json", "modified")


@case(
    "ensemble.json member path redirected to another run",
    "tamper",
    "refuse",
    "refused even after re-sealing the ensemble card: the member's card sha256 no longer matches",
)
def _tamper_member_path(tmp: Path) -> str:
    from ensemble import load
    from export.sources import open_source
    from zoo.artifacts import read_card, write_card, write_json

    ens, runs = _ensemble(tmp)
    impostor = fake_member(tmp / "elsewhere" / "impostor", name="m1", seed=9, model=False)
    spec = json.loads((ens / "ensemble.json").read_text())
    spec["members"][1]["path"] = os.path.relpath(impostor, ens)
    spec["members"][1]["abs_path"] = str(impostor)
    card = read_card(ens)
    write_json(ens / "ensemble.json", spec)
    refused(lambda: load(ens), "ensemble.json", "modified")
    write_card(ens, {k: v for k, v in card.items() if k != "files"})  # re-sealed by the attacker
    refused(lambda: open_source(ens), "changed since the ensemble was built")
    return refused(lambda: load(ens), "changed since the ensemble was built")


@case(
    "ensemble.json member path escaping to a non-run folder",
    "tamper",
    "refuse",
    "refused: `member '…' not found` (only folders holding a verified run card are members)",
)
def _tamper_member_escape(tmp: Path) -> str:
    from ensemble import load
    from zoo.artifacts import read_card, write_card, write_json

    ens, _ = _ensemble(tmp)
    spec = json.loads((ens / "ensemble.json").read_text())
    spec["members"][0]["path"] = "../../../../../../../../etc"
    spec["members"][0]["abs_path"] = "/etc"
    card = read_card(ens)
    write_json(ens / "ensemble.json", spec)
    write_card(ens, {k: v for k, v in card.items() if k != "files"})
    return refused(lambda: load(ens), "not found")


@case(
    "export folder: model.onnx replaced",
    "tamper",
    "refuse",
    "refused by the predictor: `file 'model.onnx' was modified after the card was written`",
    covered_by="tests/export/test_predictor.py::test_export_folder_resolution",
)
def _tamper_onnx_folder(tmp: Path) -> str:
    from export.predictor import load
    from zoo.artifacts import write_card

    folder = tmp / "export"
    tiny_onnx(folder / "model.onnx")
    write_card(folder, {"kind": "export", "name": "tiny", "classes": list(CLASSES), "input": {"image_size": 8}})
    tiny_onnx(folder / "model.onnx", classes=("w", "x", "y", "z"))
    return refused(lambda: load(folder, "cpu"), "modified")


# ============================================================================= interruptions
REPO = Path(__file__).resolve().parents[1]
TINY_JSON = '{"widths":[8,16],"depths":[1,1],"stem_width":8}'


def train_cmd(
    out: Path,
    resume: bool = False,
    epochs: int = 4,
    data: str = "synthetic:96",
    image_size: int = 20,
    params: str | None = TINY_JSON,
    batch_size: int = 32,
    extra: tuple[str, ...] = (),
) -> list[str]:
    """A ``zoo train custom_cnn`` child command (by default the issue's tiny one: synthetic:96 at 20 px).

    ``params=None`` trains the default custom_cnn; ``extra`` adds options (e.g. ``--nondeterministic``).
    """
    cmd = [sys.executable, "-m", "zoo.cli", "-q", "train", "custom_cnn", "--data", data]
    cmd += ["--image-size", str(image_size), "--epochs", str(epochs), "--batch-size", str(batch_size)]
    cmd += ["--params", params] if params else []
    cmd += ["--out", str(out), *extra]
    return cmd + (["--resume"] if resume else [])


def subprocess_env() -> dict[str, str]:
    """The environment for a ``python -m zoo.cli`` child: this checkout first, quiet, CPU."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", ZOO_PROGRESS="0", CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def kill_during_training(
    out: Path, after_epoch: int, timeout: float = 300, cmd: list[str] | None = None, state_file: Path | None = None
) -> dict:
    """Start ``zoo train`` (or ``cmd``) in a subprocess; SIGKILL it once ``after_epoch`` epochs are checkpointed."""
    state_file = state_file or out / "checkpoint" / "state.json"
    proc = subprocess.Popen(
        cmd or train_cmd(out), cwd=REPO, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    t0 = time.time()
    state = None
    try:
        while time.time() - t0 < timeout:
            if proc.poll() is not None:
                raise AssertionError(
                    f"training ended (rc {proc.returncode}) before it was killed: {proc.stderr.read().decode()[-2000:]}"
                )
            try:
                state = json.loads(state_file.read_text())
            except (FileNotFoundError, json.JSONDecodeError):  # not written yet (atomic: never half-written)
                state = None
            if state and state["epoch"] >= after_epoch:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("no checkpoint within the timeout")
    finally:
        killed_at = time.time()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"expected SIGKILL, got rc {proc.returncode}"
    return {"state": state, "killed_at": killed_at, "state_mtime": state_file.stat().st_mtime}


def case_by_name(name: str) -> Case:
    for c in CASES:
        if c.name == name:
            return c
    raise KeyError(name)


# ============================================================================= round 2 (issue 14)
# Ownership: a command writes only into a new/empty folder or (--force) a complete artifact of its own kind.
def _user_folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "notes.txt").write_text("mine")
    return path


def _intact(*files: Path) -> None:
    for f in files:
        assert f.is_file(), f"{f} was deleted"


@case(
    "export --out: a user's non-empty folder",
    "ownership",
    "refuse",
    "refused before any work: `exists, is not empty and holds files no zoo command finished (no card.json); refusing to write into it`; nothing deleted",
)
def _own_export_user_folder(tmp: Path) -> str:
    from export.convert import export_model

    run = fake_member(tmp / "run", model=False)
    mine = _user_folder(tmp / "mine")
    msg = refused(lambda: export_model(run, mine), "no card.json", "refusing")
    refused(lambda: export_model(run, mine, force=True), "no card.json")
    _intact(mine / "notes.txt")
    return msg


@case(
    "export --out: a parent of the source run (or the run itself)",
    "ownership",
    "refuse",
    "refused: `contains the source …; writing there would replace it`; the run is intact",
)
def _own_export_contains_source(tmp: Path) -> str:
    from export.convert import export_model
    from zoo.artifacts import read_card

    run = fake_member(tmp / "runs" / "m", model=False)
    refused(lambda: export_model(run, run, force=True), "contains the source")
    refused(lambda: export_model(run, run / "sub"), "inside the source")
    msg = refused(lambda: export_model(run, tmp / "runs", force=True), "contains the source")
    read_card(run)
    return msg


@case(
    "--force over a complete artifact of another kind",
    "ownership",
    "refuse",
    "refused: `holds a complete 'member' artifact, not a 'export'`; --force replaces only the command's own kind",
)
def _own_force_other_kind(tmp: Path) -> str:
    from ensemble import EnsembleConfig, build_ensemble
    from export.convert import export_model
    from zoo.artifacts import read_card

    run = fake_member(tmp / "run", model=False)
    other = fake_member(tmp / "other", name="other", model=False)
    refused(lambda: build_ensemble([run, run], other, config=EnsembleConfig(folds=3), force=True), "'member' artifact")
    msg = refused(lambda: export_model(run, other, force=True), "'member' artifact", "refusing")
    read_card(other)
    return msg


@case(
    "--force over an artifact holding files its card does not list",
    "ownership",
    "refuse",
    "refused: `holds file(s) its card does not list (notes.txt); refusing to delete them`",
)
def _own_force_unlisted(tmp: Path) -> str:
    from ensemble import EnsembleConfig, build_ensemble

    runs = [fake_member(tmp / f"m{i}", name=f"m{i}", seed=i, model=False) for i in range(2)]
    ens = build_ensemble(runs, tmp / "ens", config=EnsembleConfig(folds=3))
    refused(lambda: build_ensemble(runs, ens, config=EnsembleConfig(folds=3)), "already exists", "--force")
    (ens / "notes.txt").write_text("mine")
    msg = refused(
        lambda: build_ensemble(runs, ens, config=EnsembleConfig(folds=3), force=True), "notes.txt", "does not list"
    )
    _intact(ens / "notes.txt")
    (ens / "notes.txt").unlink()
    build_ensemble(runs, ens, config=EnsembleConfig(folds=3), force=True)  # its own kind, nothing else inside: replaced
    return msg


@case(
    "train/ensemble/export/clean --out naming a file, or a path under a file",
    "ownership",
    "refuse",
    "refused: `is a file, not a folder` / `'…' is a file, so nothing can be created under it`",
)
def _own_out_is_file(tmp: Path) -> str:
    from ensemble import EnsembleConfig, build_ensemble
    from zoo.curate.clean import clean
    from zoo.train import train

    f = tmp / "file.txt"
    f.write_text("mine")
    runs = [fake_member(tmp / f"m{i}", name=f"m{i}", seed=i, model=False) for i in range(2)]
    refused(lambda: train("custom_cnn", "synthetic:32", f), "is a file, not a folder")
    refused(lambda: train("custom_cnn", "synthetic:32", f / "run"), "is a file, so nothing can be created under it")
    refused(lambda: build_ensemble(runs, f, config=EnsembleConfig(folds=3)), "is a file")
    tree = write_tree(tmp / "tree")
    refused(lambda: clean(tree, f / "x"), "is a file")
    msg = refused(lambda: clean(tree, tree / "cleaned"), "inside the source")
    assert f.read_text() == "mine"
    return msg


@case(
    "zoo predict --out naming a folder, a path under a file, or an existing file",
    "ownership",
    "refuse",
    "refused before predicting: `is a folder; give a file name`, `is a file, so nothing can be created under it`, `file exists; pass --force`",
)
def _own_predict_out(tmp: Path) -> str:
    from zoo.ownership import check_file_target

    f = tmp / "p.csv"
    f.write_text("mine")
    refused(lambda: check_file_target(tmp), "is a folder")
    refused(lambda: check_file_target(f / "x.csv"), "is a file, so nothing")
    msg = refused(lambda: check_file_target(f), "exists", "--force")
    assert check_file_target(f, force=True) == f and f.read_text() == "mine"
    return msg


@case(
    "zoo run output: a user's non-empty folder",
    "ownership",
    "refuse",
    "refused: `output …: exists, is not empty and holds files no zoo command finished`; an earlier pipeline output (marker or its config.json) is resumed",
)
def _own_pipeline_root(tmp: Path) -> str:
    from zoo import config, pipeline

    cfg = config.load(None)
    cfg.output = str(_user_folder(tmp / "out"))
    msg = refused(lambda: pipeline.run(cfg), "no card.json")
    _intact(tmp / "out" / "notes.txt")
    return msg


@case(
    "partial folder left by a killed command",
    "ownership",
    "accept",
    "`.NAME.partial-<pid>` holding the zoo's marker (process gone) is removed by the next writer of NAME; look-alikes without the marker are kept",
)
def _own_stale_partial(tmp: Path) -> str:
    from zoo import ownership

    out = tmp / "export"
    stale = tmp / ".export.partial-999999999"
    stale.mkdir()
    ownership.write_marker(stale, "export")
    (stale / "model.onnx").write_bytes(b"half")
    lookalike = tmp / ".export.partial-1"
    _user_folder(lookalike)
    with ownership.claim(out, "export") as claim:
        with claim.staging() as tmp_dir:
            (tmp_dir / "x.txt").write_text("x")
            assert tmp_dir.stat().st_mode & 0o777 == 0o777 & ~_umask(), "partial folder has unusual permissions"
    assert not stale.exists(), "stale partial folder not removed"
    _intact(lookalike / "notes.txt")
    assert (out / "x.txt").is_file() and not (out / ownership.MARKER).exists()
    assert out.stat().st_mode & 0o777 == 0o777 & ~_umask()
    assert not (tmp / ".export.lock").exists(), "lock file left behind"
    return f"removed {stale.name}, kept {lookalike.name}; {out.name} is {oct(out.stat().st_mode & 0o777)}"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@case(
    "second writer to the same --out while the first runs",
    "ownership",
    "refuse",
    "refused: `another zoo command is writing this folder right now (lock .NAME.lock)` (filelock beside the folder)",
)
def _own_second_writer(tmp: Path) -> str:
    from ensemble import EnsembleConfig, build_ensemble
    from zoo import ownership

    runs = [fake_member(tmp / f"m{i}", name=f"m{i}", seed=i, model=False) for i in range(2)]
    with ownership.writer_lock(tmp / "ens"):
        msg = refused(lambda: build_ensemble(runs, tmp / "ens", config=EnsembleConfig(folds=3)), "another zoo command")
    build_ensemble(runs, tmp / "ens", config=EnsembleConfig(folds=3))
    return msg


# Special files: only regular files are read; FIFOs, devices and sockets are never opened for reading.
class fifo_watchdog:
    """Opens the write end of FIFOs after ``after`` seconds, so a reader that blocked returns (and the case fails)."""

    def __init__(self, *fifos: Path, after: float = 20.0):
        import threading

        self.fifos, self.after, self.stop = fifos, after, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        if self.stop.wait(self.after):
            return
        for f in self.fifos:
            try:
                os.close(os.open(f, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass

    def __enter__(self):
        self.t0 = time.time()
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        assert time.time() - self.t0 < self.after, (
            f"blocked on a FIFO for {self.after:.0f} s (a hang without the watchdog)"
        )


def _fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


@case(
    "FIFO (named pipe) named .jpg among the images",
    "special",
    "skip/refuse",
    "never opened for reading: `is a FIFO (named pipe), not a regular file; not read` — refused naming it, or skipped and reported with `skip_bad`; `zoo data inspect` lists it as unreadable",
)
def _fifo_image(tmp: Path) -> str:
    from zoo.curate.inspection import run_inspection

    tree = write_tree(tmp / "tree")
    fifo = _fifo(tree / "basophil" / "pipe.jpg")
    with fifo_watchdog(fifo):
        msg = refused(lambda: _load(tree), "pipe.jpg", "FIFO")
        ds = _load(tree, skip_bad=True)
        assert any("pipe.jpg" in s["file"] and "FIFO" in s["reason"] for s in ds.skipped), ds.skipped
        rep = run_inspection(str(tree)).report
        assert "pipe.jpg" in json.dumps(rep), "the FIFO is not reported by the inspection"
    return msg


@case(
    "character device (/dev/zero) linked in as an image",
    "special",
    "skip/refuse",
    "never read: `is a character device, not a regular file; not read` (refused / skipped)",
)
def _device_image(tmp: Path) -> str:
    tree = write_tree(tmp / "tree")
    os.symlink("/dev/zero", tree / "basophil" / "zero.png")
    msg = refused(lambda: _load(tree), "zero.png", "character device")
    assert any("zero.png" in s["file"] for s in _load(tree, skip_bad=True).skipped)
    return msg


@case(
    "image file above the size limit (sparse 300 MB .jpg)",
    "special",
    "skip/refuse",
    "refused from `os.stat` before reading: `file is … bytes, above the 268,435,456-byte limit`",
)
def _huge_file(tmp: Path) -> str:
    tree = write_tree(tmp / "tree")
    with open(tree / "basophil" / "huge.jpg", "wb") as fh:
        fh.truncate(300 * (1 << 20))  # sparse: no disk space, no read
    msg = refused(lambda: _load(tree), "huge.jpg", "limit")
    return msg


@case(
    "FIFO given to zoo predict (as an image, in a folder, as the model)",
    "special",
    "skip/refuse",
    "images: reported per file with status 'error' (`is a FIFO …; not read`); model: refused `is a FIFO (named pipe), not a regular file`",
)
def _fifo_predict(tmp: Path) -> str:
    from export.predictor import load, predict_files

    model = tiny_onnx(tmp / "m.onnx")
    _set_props(model, {"zoo.parity": json.dumps({"passed": True, "max_abs_diff": 0.0})})
    folder = write_tree(tmp / "imgs", classes=("a",), n=2)
    img_fifo, model_fifo = _fifo(folder / "a" / "pipe.png"), _fifo(tmp / "pipe.onnx")
    with fifo_watchdog(img_fifo, model_fifo):
        _, records = predict_files(model, [folder, img_fifo], provider="cpu")
        bad = [r for r in records if r["status"] == "error"]
        assert len(bad) == 2 and all("FIFO" in r["error"] for r in bad), bad
        assert sum(r["status"] == "ok" for r in records) == 2
        msg = refused(lambda: load(model_fifo, "cpu"), "FIFO")
    return msg


@case(
    "FIFO as card.json, ensemble.json, .npz, .npy or config",
    "special",
    "refuse",
    "refused, never read: `is a FIFO (named pipe), not a regular file` / `no such file (not a regular file; not read)`",
)
def _fifo_artifacts(tmp: Path) -> str:
    from zoo import config
    from zoo.artifacts import load_npy, read_card

    (tmp / "run").mkdir()
    fifos = [_fifo(tmp / "run" / "card.json"), _fifo(tmp / "d.npz"), _fifo(tmp / "p.npy"), _fifo(tmp / "c.toml")]
    with fifo_watchdog(*fifos):
        msg = refused(lambda: read_card(tmp / "run"), "FIFO")
        refused(lambda: _load(tmp / "d.npz"), "not a regular file")
        refused(lambda: load_npy(tmp / "p.npy"), "FIFO")
        refused(lambda: config.load(tmp / "c.toml"))
    return msg


# Validation: fields read from artifacts are checked, not believed (even when the card's hashes match).
def _reseal(folder: Path, card: dict) -> None:
    """What an attacker or a hand edit does: rewrite card.json with hashes that match (bypassing write_card's checks)."""
    from zoo.artifacts import folder_files, write_json

    write_json(folder / "card.json", {**card, "files": folder_files(folder)})


@case(
    "card hand-edited and re-sealed: duplicate/empty class names, bad image_size, NaN metric",
    "tamper",
    "refuse",
    "refused by every reader: `duplicate class names`, `image_size must be an integer in 2..4096`, `must be a finite number` (NaN literals are not JSON the zoo reads)",
)
def _tamper_card_fields(tmp: Path) -> str:
    from zoo.artifacts import read_card

    run = fake_member(tmp / "run", model=False)
    card = read_card(run)
    for bad, needle in (
        (dict(classes=["a", "a", "b"]), "duplicate class names"),
        (dict(classes=["a", "", "b"]), "class name"),
        (dict(input={**card["input"], "image_size": 0}), "image_size"),
        (dict(input={**card["input"], "image_size": 10**9}), "image_size"),
        (dict(input={**card["input"], "image_size": 16.5}), "image_size"),
        (dict(metrics={"val": {"accuracy": float("nan")}}), "not valid JSON"),
        (dict(metrics={"val": {"accuracy": 7}}), "metrics.val.accuracy"),
        (dict(name=""), "name"),
    ):
        _reseal(run, {**card, **bad})
        msg = refused(lambda: read_card(run), needle)
    return msg


@case(
    "ensemble.json re-sealed with negative/NaN weights, a wrong-shaped coef or no member hash",
    "tamper",
    "refuse",
    "refused by `ensemble.load` and the exporter: `'weights': holds negative values`, `shape …`, `members[0].card_sha256: must be a sha256`",
)
def _tamper_ensemble_fields(tmp: Path) -> str:
    from ensemble import load
    from export.sources import open_source
    from zoo.artifacts import read_card, write_json

    ens, _ = _ensemble(tmp)
    spec, card = json.loads((ens / "ensemble.json").read_text()), read_card(ens)
    members = [{k: v for k, v in m.items() if k != "card_sha256"} for m in spec["members"]]
    for bad, needle in (
        ({"weights": [-1.0, 2.0]}, "negative"),
        ({"weights": [1.0]}, "shape"),
        ({"temperature": 0}, "temperature"),
        ({"weights": [float("nan"), 1.0]}, "valid JSON"),
        ({"members": members}, "card_sha256"),
        ({"method": "stack", "features": "log", "coef": [[1.0]], "intercept": [0.0] * 3}, "coef"),
    ):
        write_json(ens / "ensemble.json", {**spec, **bad})
        _reseal(ens, card)
        refused(lambda: load(ens), needle)
        msg = refused(lambda: open_source(ens), needle)
    return msg


def _set_props(path: Path, props: dict[str, str]) -> Path:
    import onnx

    from export import metadata as meta

    m = onnx.load(str(path))
    base = meta.build(name="tiny", kind="member", classes=list(CLASSES), image_size=8, source_card_sha256="0" * 64)
    meta.attach(m, {**base, **props})
    path.write_bytes(m.SerializeToString())
    return path


@case(
    "extra model.fp16.onnx dropped into a verified export folder",
    "tamper",
    "refuse",
    "refused: `model.fp16.onnx is not one of the files its card lists` (folder or file path); only listed files are loaded",
)
def _tamper_extra_variant(tmp: Path) -> str:
    from export.predictor import load
    from zoo.artifacts import write_card

    folder = tmp / "export"
    _set_props(tiny_onnx(folder / "model.onnx"), {"zoo.parity": json.dumps({"passed": True})})
    write_card(folder, {"kind": "export", "name": "tiny", "classes": list(CLASSES), "input": {"image_size": 8}})
    _set_props(
        tiny_onnx(folder / "model.fp16.onnx"), {"zoo.parity": json.dumps({"passed": True}), "zoo.variant": "fp16"}
    )
    refused(lambda: load(folder / "model.fp16.onnx", "cpu"), "not one of the files")
    return refused(lambda: load(folder, "cpu", variant="fp16"), "model.fp16.onnx", "not one of the files")


def _onnx_graph(path: Path, *, softmax: bool = True, dtype: int | None = None, scale: float = 1.0) -> Path:
    from onnx import TensorProto, helper

    dtype = dtype or TensorProto.FLOAT
    w = helper.make_tensor("w", TensorProto.FLOAT, [3, 3], (scale * np.linspace(-1, 1, 9)).tolist())
    nodes = [
        helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["xf"], ["m"], axes=[1, 2], keepdims=0),
        helper.make_node("MatMul", ["m", "w"], ["z" if softmax else "probs"]),
    ]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["z"], ["probs"], axis=-1))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", dtype, ["N", 8, 8, 3])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 3])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return _set_props(path, {"zoo.parity": json.dumps({"passed": True})})


@case(
    "ONNX model whose outputs are not probabilities (no softmax: −378 …)",
    "onnx",
    "refuse",
    "refused at load from a probe image: `outputs range …, not probabilities in [0, 1]; refused`",
)
def _onnx_not_probs(tmp: Path) -> str:
    from export.predictor import load

    return refused(
        lambda: load(_onnx_graph(tmp / "logits.onnx", softmax=False, scale=500.0), "cpu"), "not probabilities"
    )


@case(
    "ONNX model whose input is not float32 (uint8, float16)",
    "onnx",
    "refuse",
    "refused: `model input 'x' is tensor(uint8); the zoo feeds float32 pixels`",
)
def _onnx_input_dtype(tmp: Path) -> str:
    from onnx import TensorProto

    from export.predictor import load

    refused(lambda: load(_onnx_graph(tmp / "f16.onnx", dtype=TensorProto.FLOAT16), "cpu"), "tensor(float16)")
    return refused(
        lambda: load(_onnx_graph(tmp / "u8.onnx", dtype=TensorProto.UINT8), "cpu"), "tensor(uint8)", "float32"
    )


@case(
    "ONNX metadata hand-edited: duplicate classes, huge image_size, uint8 range",
    "onnx",
    "refuse",
    "refused: `metadata 'zoo.classes': duplicate class names`, `image_size must be an integer in 2..4096`, `this zoo feeds [0, 255]`",
)
def _onnx_metadata_fields(tmp: Path) -> str:
    from export.predictor import load

    model = tiny_onnx(tmp / "m.onnx")
    for props, needle in (
        ({"zoo.classes": json.dumps(["a", "a", "b"])}, "duplicate class names"),
        ({"zoo.input": json.dumps({"image_size": 100000})}, "image_size"),
        ({"zoo.input": json.dumps({"image_size": 8, "range": [0, 1]})}, "range"),
    ):
        _set_props(model, {**props, "zoo.parity": json.dumps({"passed": True})})
        msg = refused(lambda: load(model, "cpu"), needle)
    return msg


@case(
    "stored probabilities re-sealed with values outside [0, 1]",
    "tamper",
    "refuse",
    "refused by `zoo.runs.load_probs` (ensembles, reports): `not probabilities in [0, 1]`",
)
def _tamper_probs_values(tmp: Path) -> str:
    from zoo.artifacts import read_card, write_npy
    from zoo.runs import load_probs

    run = fake_member(tmp / "run", model=False)
    card = read_card(run)
    p = np.load(run / "probs" / "val.npy")
    write_npy(run / "probs" / "val.npy", (p * -378).astype(np.float32))
    _reseal(run, card)
    return refused(lambda: load_probs(run, "val"), "not probabilities")


@case(
    "member model.keras re-sealed whose outputs are not probabilities",
    "tamper",
    "refuse",
    "refused by `zoo.runs.load_model` from a probe image: `outputs range …, not probabilities`",
    needs_tf=True,
)
def _tamper_keras_logits(tmp: Path) -> str:
    import keras

    from zoo.artifacts import read_card
    from zoo.runs import load_model

    run = fake_member(tmp / "run")
    card = read_card(run)
    logits = keras.Sequential(
        [keras.Input((16, 16, 3)), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(len(CLASSES))]
    )
    logits.set_weights([np.full((3, 3), 5.0, np.float32), np.zeros(3, np.float32)])
    logits.save(run / "model.keras")
    _reseal(run, card)
    return refused(lambda: load_model(run), "not probabilities")


@case(
    "training diverges (NaN loss)",
    "run",
    "refuse",
    "stops at the first non-finite batch: `training diverged (non-finite loss at epoch N, batch B …); the folder keeps its last good epoch` — its checkpoint is never overwritten, `--resume` continues from it",
    needs_tf=True,
)
def _nan_training(tmp: Path) -> str:
    import keras

    import zoo.train as zt

    real = zt.make_optimizer

    class NaNAfter(keras.optimizers.schedules.LearningRateSchedule):
        def __init__(self, steps):
            self.steps = steps

        def __call__(self, step):
            return keras.ops.where(step < self.steps, 1e-3, float("nan"))

    out = tmp / "run"
    kw = dict(
        image_size=16,
        params={"widths": [8, 16], "depths": [1, 1], "stem_width": 8},
        epochs=3,
        batch_size=32,
        tensorboard=False,
    )
    # The learning rate turns NaN after the first epoch (steps = steps per epoch × 3 epochs): epoch 2 diverges.
    zt.make_optimizer = lambda cfg, scale, steps: keras.optimizers.AdamW(
        NaNAfter(steps // 3), weight_decay=cfg.weight_decay
    )
    try:
        msg = refused(lambda: zt.train("custom_cnn", "synthetic:96", out, **kw), "diverged", "last good epoch")
    finally:
        zt.make_optimizer = real
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 1 and len(state["history"]) == 1, state
    # (learning_rate is the schedule's value for the next step: this test's schedule is NaN from epoch 2 on)
    assert all(
        np.isfinite(v) for r in state["history"] for k, v in r.items() if isinstance(v, float) and k != "learning_rate"
    ), state["history"]
    assert not (out / "card.json").exists()
    zt.train("custom_cnn", "synthetic:96", out, resume=True, **kw)  # resumes from the good epoch and completes
    history = (out / "history.csv").read_text().splitlines()
    assert len(history) == 4, history
    return msg
