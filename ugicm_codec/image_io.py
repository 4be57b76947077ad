"""Reading and writing images with Pillow: orientation, colour modes, bit depths, alpha, metadata.

The codec codes 8-bit RGB. Around that:
- greyscale inputs are coded as RGB and marked greyscale, so they decode to greyscale;
- palette images are expanded; 16-bit and float images are scaled to 8 bits;
- CMYK images (print JPEGs and TIFFs) are converted to sRGB: through their embedded ICC profile
  when Little CMS can read it (relative colorimetric with black point compensation), else with
  Pillow's plain formula; the CMYK profile is consumed by the conversion, not carried;
- EXIF orientation is applied to the pixels;
- alpha is kept, losslessly, in its own chunk (a fully opaque alpha channel is dropped);
- the ICC profile and EXIF travel as metadata unless stripped.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .container import looks_like_ugc
from .errors import ImageError, OutputError

# Pillow's decompression-bomb guard is replaced by our own explicit limit (--max-pixels).
Image.MAX_IMAGE_PIXELS = None

_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
# Identical images have infinite PSNR. A finite stand-in keeps averages and JSON finite; it lies far
# above anything a lossy codec reaches at 8 bits, so it cannot flatter a real result.
PSNR_CAP_DB = 100.0


@dataclass
class Picture:
    """Pixels as the codec sees them, plus what travels beside them."""

    rgb: np.ndarray  # HxWx3 uint8
    colour_mode: str  # "RGB" or "L"
    alpha: np.ndarray | None = None  # HxW uint8, None when opaque
    icc_profile: bytes | None = None
    exif: bytes | None = None

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.shape[1], self.rgb.shape[0]

    def planes(self) -> np.ndarray:
        """The colour planes as a decode delivers them: HxW for greyscale (Pillow's luma of the
        coded RGB), HxWx3 otherwise."""
        if self.colour_mode == "L":
            return np.asarray(Image.fromarray(self.rgb, "RGB").convert("L"))
        return self.rgb

    def to_pil(self) -> Image.Image:
        im = Image.fromarray(self.planes(), self.colour_mode)
        if self.alpha is not None:
            im.putalpha(Image.fromarray(self.alpha, "L"))
        if self.icc_profile:
            im.info["icc_profile"] = self.icc_profile
        if self.exif:
            im.info["exif"] = self.exif
        return im


def open_image(source: str | Path | bytes, max_pixels: int) -> Image.Image:
    try:
        im = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except UnidentifiedImageError:
        if isinstance(source, bytes):
            head = source[:16]
        else:
            with open(source, "rb") as f:
                head = f.read(16)
        if looks_like_ugc(head):  # an encode of what was meant for decode, or twice over a folder
            raise ImageError("a .ugc file, not an image: ugicm decode reads it") from None
        # a 0-byte file is the commonest unreadable input (an interrupted download or redirect)
        raise ImageError("empty file (0 bytes)" if not head else "not an image Pillow can read") from None
    except OSError as e:
        raise ImageError(f"cannot read image: {e}") from None
    if im.format == "UGC":  # opened by ugicm_codec.pillow: still the slip it is without the plugin
        im.close()
        raise ImageError("a .ugc file, not an image: ugicm decode reads it")
    check_size(im.width, im.height, max_pixels)
    if getattr(im, "n_frames", 1) > 1:
        raise ImageError(f"animated or multi-frame {im.format} images are not supported")
    return im


def check_size(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageError(
            f"image of {width}x{height} pixels exceeds the limit of {max_pixels} (see --max-pixels)"
        )
    if width < 1 or height < 1:
        raise ImageError(f"empty image ({width}x{height})")


def _scale_to_8bit(arr: np.ndarray, mode: str) -> np.ndarray:
    arr = arr.astype(np.float64)
    if mode == "F":
        peak = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
    else:
        peak = 65535.0 if arr.max(initial=0) > 255 else 255.0
    return np.clip(np.round(arr * (255.0 / peak)), 0, 255).astype(np.uint8)


def to_picture(im: Image.Image, keep_metadata: bool = True) -> Picture:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = ImageOps.exif_transpose(im)
        im.load()
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageError(f"cannot decode image: {e}") from None
    icc = im.info.get("icc_profile") if keep_metadata else None
    if im.mode == "CMYK":
        im, icc = cmyk_to_srgb(im), None  # the profile described the ink, not the RGB pixels
    exif = None
    if keep_metadata:
        data = im.getexif()
        exif = data.tobytes() if len(data) else None
    rgb, mode, alpha = _pixels(im)
    if alpha is not None and alpha.min(initial=255) == 255:
        alpha = None
    return Picture(np.ascontiguousarray(rgb), mode, alpha, icc or None, exif)


def cmyk_to_srgb(im: Image.Image) -> Image.Image:
    """CMYK to 8-bit sRGB. A CMYK file's colours are defined by its profile (a press's inks), so
    that is used when present; Pillow's formula (R = 255 - C - K, clipped, ...) is what a file
    without one, or with one Little CMS cannot read, falls back to."""
    profile = im.info.get("icc_profile")
    try:
        from PIL import ImageCms  # needs Pillow built with Little CMS, as its wheels are
    except ImportError:
        profile = None
    if profile:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
            transform = ImageCms.buildTransform(  # Photoshop's default conversion
                source,
                ImageCms.createProfile("sRGB"),
                "CMYK",
                "RGB",
                renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
                flags=ImageCms.Flags.BLACKPOINTCOMPENSATION,
            )
            return ImageCms.applyTransform(im, transform)
        except (OSError, ValueError, ImageCms.PyCMSError):
            pass
    return im.convert("RGB")


def _pixels(im: Image.Image) -> tuple[np.ndarray, str, np.ndarray | None]:
    mode = im.mode
    if mode == "P" or mode == "PA":
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode in _SIXTEEN_BIT:
        grey = _scale_to_8bit(np.asarray(im), mode)
        return np.repeat(grey[..., None], 3, axis=2), "L", None
    if mode in ("L", "1"):
        grey = np.asarray(im.convert("L"))
        return np.repeat(grey[..., None], 3, axis=2), "L", None
    if mode in ("LA", "La"):
        la = np.asarray(im.convert("LA"))
        return np.repeat(la[..., :1], 3, axis=2), "L", la[..., 1].copy()
    if mode in ("RGBA", "RGBa"):
        rgba = np.asarray(im.convert("RGBA"))
        return rgba[..., :3], "RGB", rgba[..., 3].copy()
    if mode in ("I;16", "RGB;16") or mode.startswith("RGB") and mode != "RGB":
        raise ImageError(f"unsupported image mode {mode}")
    if mode != "RGB":
        try:
            im = im.convert("RGB")
        except (ValueError, OSError) as e:
            raise ImageError(f"unsupported image mode {mode}: {e}") from None
    return np.asarray(im), "RGB", None


FORMATS_BY_SUFFIX = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}


def writable_formats() -> dict[str, str]:
    """Suffix -> Pillow format, for every format the installed Pillow (with its plugins) can
    write, .ugc left out: a decode writes pixels, and re-encoding them is ``ugicm encode``'s."""
    Image.init()
    formats = {
        ext: fmt for ext, fmt in Image.registered_extensions().items() if fmt in Image.SAVE and fmt != "UGC"
    }
    formats.update(FORMATS_BY_SUFFIX)
    return formats


def psnr(original: np.ndarray, decoded: np.ndarray) -> float:
    """PSNR in dB of the mean squared error over all pixels and channels of two uint8 arrays, peak 255."""
    if original.shape != decoded.shape or original.dtype != np.uint8 or decoded.dtype != np.uint8:
        raise ValueError(
            f"PSNR takes two uint8 arrays of one shape, not {original.dtype}{original.shape} "
            f"and {decoded.dtype}{decoded.shape}"
        )
    mse = np.mean((original.astype(np.float64) - decoded.astype(np.float64)) ** 2)
    if mse == 0:
        return PSNR_CAP_DB
    return min(PSNR_CAP_DB, 10 * math.log10(255.0**2 / mse))


def encode_image(im: Image.Image, fmt: str) -> bytes:
    if fmt in ("JPEG", "BMP") and im.mode in ("RGBA", "LA"):
        raise OutputError(f"{fmt} cannot hold the image's alpha channel; write .png, .webp or .tif")
    # WebP output is lossless: it stores the decoded pixels as they are.
    # AVIF (and JPEG) outputs are lossy at quality 95, near the decoded pixels.
    options: dict = (
        {"quality": 95} if fmt in ("JPEG", "AVIF") else {"lossless": True} if fmt == "WEBP" else {}
    )
    for key in ("icc_profile", "exif"):
        if im.info.get(key) and fmt in ("PNG", "JPEG", "WEBP", "TIFF", "AVIF"):
            options[key] = im.info[key]
    buf = io.BytesIO()
    try:
        im.save(buf, format=fmt, **options)
    except (OSError, ValueError, KeyError) as e:
        raise OutputError(f"cannot write {fmt}: {e}") from None
    return buf.getvalue()
