"""Decode one image file into RGB uint8 at a fixed square size, whatever the file holds.

PIL handles the format zoo; this module decides the policy: EXIF orientation is applied,
grayscale/palette/CMYK/16-bit become RGB, transparency is composited on white (microscope
backgrounds are bright), and images beyond a pixel budget are refused before decoding
(decompression-bomb guard). Anything unreadable raises :class:`BadImage` with the reason.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
# 50 megapixels: ~7000×7000, far above any single-cell crop, well below a bomb.
MAX_PIXELS = 50_000_000
MIN_SIDE = 2


class BadImage(Exception):
    """A file that cannot be used as an image; ``str()`` is the reason."""


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB with the conversions documented above."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        hi = arr.max() or 1.0
        img = Image.fromarray(np.rint(arr * (255.0 / hi)).clip(0, 255).astype(np.uint8), mode="L")
    elif img.mode == "F":
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64))
        lo, hi = arr.min(), arr.max()
        img = Image.fromarray(
            np.rint((arr - lo) * (255.0 / ((hi - lo) or 1.0))).clip(0, 255).astype(np.uint8), mode="L"
        )
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("RGB")


def decode(data: bytes, size: int | None, name: str = "<bytes>") -> np.ndarray:
    """Bytes of an image file -> ``(size, size, 3) uint8`` (or native size when ``size`` is None)."""
    if not data:
        raise BadImage("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Our own, lower limit below decides; PIL's warning would only pre-empt its message.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.simplefilter("ignore", UserWarning)  # "Corrupt EXIF data": the pixels are still fine
            with Image.open(io.BytesIO(data)) as img:
                w, h = img.size
                if w * h > MAX_PIXELS:
                    raise BadImage(
                        f"image is {w}×{h} pixels, above the {MAX_PIXELS:,}-pixel limit (decompression-bomb guard)"
                    )
                if min(w, h) < MIN_SIDE:
                    raise BadImage(f"image is {w}×{h} pixels, too small to classify")
                img.load()
                img = _oriented(img)
                img = to_rgb(img)
                if size is not None and img.size != (size, size):
                    img = img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
                return np.asarray(img, dtype=np.uint8).copy()
    except BadImage:
        raise
    except Image.DecompressionBombError:
        raise BadImage(f"image is above the {MAX_PIXELS:,}-pixel limit (decompression-bomb guard)") from None
    except UnidentifiedImageError as exc:
        raise BadImage(f"not a readable image ({type(exc).__name__})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise BadImage(f"corrupt or truncated image ({_one_line(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - PIL's parsers raise struct.error, IndexError, … on crafted files
        raise BadImage(f"corrupt image, the decoder failed ({type(exc).__name__}: {_one_line(exc)})") from None


def _oriented(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; an unreadable EXIF block leaves the pixels as stored."""
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - malformed EXIF must not make a good image unreadable
        return img


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def resize_array(images: np.ndarray, size: int) -> np.ndarray:
    """Resize a uint8 batch ``(N, H, W, 3)`` to ``size`` with the same filter as :func:`decode`."""
    if images.shape[1:3] == (size, size):
        return images
    out = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for i, im in enumerate(images):
        out[i] = np.asarray(Image.fromarray(im).resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None))
    return out
