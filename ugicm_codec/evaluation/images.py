"""Reading evaluation images as the HxWx3 uint8 RGB arrays every metric and baseline works on.

Kept apart from the codec's own image reading on purpose: the reference pixels a codec is scored
against should not come from the code under test. EXIF orientation is applied (the codec applies
it too); greyscale is replicated to three channels; alpha, if any, is not scored.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageError


def load_rgb(source: str | Path | bytes) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                im = ImageOps.exif_transpose(im)
            return np.ascontiguousarray(np.asarray(im.convert("RGB")))
    except UnidentifiedImageError:
        raise ImageError("not an image Pillow can read") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageError(f"cannot read image: {e}") from None


def unreadable(path: Path) -> str | None:
    """Why Pillow cannot read ``path`` (a cheap check of headers and checksums), or None."""
    try:
        with Image.open(path) as im:
            im.verify()
    except UnidentifiedImageError:
        return "not an image Pillow can read"
    except (OSError, ValueError, SyntaxError) as e:
        return f"cannot read image: {e}"
    return None
