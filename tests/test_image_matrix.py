"""Every input kind round-trips through encode and decode: formats x modes x bit depths x shapes."""

import io

import numpy as np
import pytest
from PIL import Image

from conftest import GOLDEN
from ugicm_codec import container
from ugicm_codec.errors import ImageError

FORMATS = ["PNG", "JPEG", "WEBP", "TIFF", "BMP"]
# mode -> (expected decoded mode, alpha kept)
MODES = {
    "RGB": ("RGB", False),
    "L": ("L", False),
    "P": ("RGB", False),
    "RGBA": ("RGBA", True),
    "LA": ("LA", True),
    "I;16": ("L", False),
}
CAN_HOLD = {  # what each format can store
    "PNG": set(MODES),
    "TIFF": {"RGB", "L", "P", "RGBA", "I;16"},
    "WEBP": {"RGB", "RGBA"},
    "JPEG": {"RGB", "L"},
    "BMP": {"RGB", "L", "P"},
}


def make(mode: str, size=(48, 40)) -> Image.Image:
    src = Image.open(GOLDEN / "source.png").convert("RGB").resize(size)
    if mode == "I;16":
        im = Image.new("I;16", size)
        im.frombytes((np.asarray(src.convert("L")).astype("<u2") * 257).tobytes())
        return im
    if mode in ("RGBA", "LA"):
        im = src.convert(mode)
        alpha = np.full(size[::-1], 255, np.uint8)
        alpha[: size[1] // 2] = 128
        im.putalpha(Image.fromarray(alpha))
        return im
    if mode == "P":
        return src.convert("P", palette=Image.ADAPTIVE, colors=32)
    return src.convert(mode)


CASES = [(f, m) for f in FORMATS for m in MODES if m in CAN_HOLD[f]]


@pytest.mark.parametrize("fmt,mode", CASES, ids=[f"{f}-{m}" for f, m in CASES])
def test_round_trip(tiny_codec, fmt, mode):
    buf = io.BytesIO()
    options = {"lossless": True} if fmt == "WEBP" else {}
    make(mode).save(buf, fmt, **options)
    data = tiny_codec.encode(buf.getvalue(), quality=50)
    f = container.parse(data)
    assert (f.width, f.height) == (48, 40)
    out = tiny_codec.decode(data, "machine")
    stored_mode = Image.open(io.BytesIO(buf.getvalue())).mode
    expected_mode, has_alpha = MODES[mode]
    if fmt == "WEBP" and stored_mode == "RGBA":
        expected_mode = "RGBA"
    assert out.size == (48, 40)
    assert out.mode == expected_mode, (stored_mode, out.mode)
    assert (f.alpha is not None) == (out.mode in ("RGBA", "LA"))


@pytest.mark.parametrize("size", [(1, 1), (1, 700), (700, 1), (2, 3)])
def test_tiny_and_extreme_shapes(tiny_codec, size):
    im = Image.new("RGB", size, (10, 200, 30))
    assert tiny_codec.decode(tiny_codec.encode(im)).size == size


def test_animated_image_is_refused(tiny_codec):
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 255, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    with pytest.raises(ImageError, match="animated"):
        tiny_codec.encode(buf.getvalue())


def test_pixel_limit_checked_before_decoding(tiny_codec):
    buf = io.BytesIO()
    Image.new("L", (3000, 3000)).save(buf, "PNG")
    from ugicm_codec.codec import Codec

    small = Codec(weights=GOLDEN / "tiny", device="cpu", max_pixels=1_000_000)
    with pytest.raises(ImageError, match="exceeds the limit"):
        small.encode(buf.getvalue())
