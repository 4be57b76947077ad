"""Reading and writing images with Pillow: orientation, colour modes, bit depths.

The codec works on 8-bit RGB. Greyscale inputs are coded as RGB and marked greyscale in the header
so they decode to greyscale; palette images are expanded; 16-bit images are reduced to 8 bits;
EXIF orientation is applied. Images with real transparency are refused for now (alpha is not
coded yet); a fully opaque alpha channel is dropped.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError

# Pillow's decompression-bomb guard is replaced by our own explicit limit (--max-pixels).
Image.MAX_IMAGE_PIXELS = None


def open_image(source: str | Path | bytes, max_pixels: int) -> Image.Image:
    try:
        im = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except UnidentifiedImageError:
        raise ImageError("not an image Pillow can read") from None
    except OSError as e:
        raise ImageError(f"cannot read image: {e}") from None
    if im.width * im.height > max_pixels:
        raise ImageError(f"image of {im.width}x{im.height} pixels exceeds the limit of {max_pixels} (see --max-pixels)")
    if getattr(im, "n_frames", 1) > 1:
        raise ImageError(f"animated or multi-frame {im.format} images are not supported")
    return im


def to_rgb_array(im: Image.Image) -> tuple[np.ndarray, str]:
    """(HxWx3 uint8 array, colour mode "RGB" or "L") for a Pillow image."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = ImageOps.exif_transpose(im)
        im.load()
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageError(f"cannot decode image: {e}") from None
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if mode != "F" and arr.max(initial=0) > 255 else 255.0
        if mode == "F":
            peak = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
        grey = np.clip(np.round(arr * (255.0 / peak)), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2), "L"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        alpha = np.asarray(im.getchannel("A"))
        if alpha.min(initial=255) < 255:
            raise ImageError("images with transparency are not supported yet (flatten the alpha channel first)")
        im = im.convert("L" if mode.startswith("L") else "RGB")
        mode = im.mode
    if mode in ("L", "1"):
        grey = np.asarray(im.convert("L"))
        return np.repeat(grey[..., None], 3, axis=2), "L"
    if mode == "CMYK":
        raise ImageError("CMYK images are not supported (convert to RGB first)")
    if mode != "RGB":
        try:
            im = im.convert("RGB")
        except (ValueError, OSError) as e:
            raise ImageError(f"unsupported image mode {mode}: {e}") from None
    return np.asarray(im), "RGB"


def from_rgb_array(arr: np.ndarray, colour_mode: str) -> Image.Image:
    im = Image.fromarray(arr, "RGB")
    return im.convert("L") if colour_mode == "L" else im


FORMATS_BY_SUFFIX = {
    ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP",
    ".tif": "TIFF", ".tiff": "TIFF", ".ppm": "PPM", ".pgm": "PPM",
}


def encode_image(im: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    options = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    im.save(buf, format=fmt, **options)
    return buf.getvalue()
