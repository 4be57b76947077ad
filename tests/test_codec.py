"""Encode/decode through the library with the fixed tiny test model (format, shapes, modes)."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import GOLDEN
from ugicm_codec import container
from ugicm_codec.errors import FormatError, ImageError, ModelMismatchError


def test_golden_files_decode_bit_exactly(tiny_codec):
    for stem in ("tiny-q30", "tiny-q90", "tiny-grey"):
        data = (GOLDEN / f"{stem}.ugc").read_bytes()
        for prefer in ("human", "machine"):
            expected = GOLDEN / f"{stem}.{prefer}.png"
            if not expected.exists():
                continue
            got = tiny_codec.decode(data, prefer)
            want = Image.open(expected)
            assert got.mode == want.mode
            assert np.array_equal(np.asarray(got), np.asarray(want)), f"{stem} {prefer}"


def test_golden_files_reencode_identically(tiny_codec, source_image):
    # Deterministic on one machine; across CPUs the encoder's floats may differ (the decoder's may not).
    assert tiny_codec.encode(source_image, quality=30) == (GOLDEN / "tiny-q30.ugc").read_bytes()
    assert tiny_codec.encode(source_image.convert("L"), quality=60) == (GOLDEN / "tiny-grey.ugc").read_bytes()


def test_one_file_two_decodes(tiny_codec, source_image):
    data = tiny_codec.encode(source_image, quality=50)
    human = np.asarray(tiny_codec.decode(data, "human"))
    machine = np.asarray(tiny_codec.decode(data, "machine"))
    middle = np.asarray(tiny_codec.decode(data, 0.5))
    assert human.shape == machine.shape == (80, 96, 3)
    assert not np.array_equal(human, machine)
    assert not np.array_equal(middle, human) and not np.array_equal(middle, machine)


@pytest.mark.parametrize("size", [(1, 1), (3, 200), (200, 3), (65, 64), (64, 65), (129, 37)])
def test_any_size_crops_back_exactly(tiny_codec, size):
    w, h = size
    rng = np.random.default_rng(w * 1000 + h)
    im = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    data = tiny_codec.encode(im, quality=40)
    f = container.parse(data)
    assert (f.width, f.height) == (w, h)
    assert tiny_codec.decode(data).size == (w, h)


def test_image_modes(tiny_codec, source_image):
    grey = source_image.convert("L")
    assert tiny_codec.decode(tiny_codec.encode(grey)).mode == "L"
    palette = source_image.convert("P", palette=Image.ADAPTIVE, colors=16)
    assert tiny_codec.decode(tiny_codec.encode(palette)).mode == "RGB"
    i16 = Image.new("I;16", grey.size)
    i16.frombytes((np.asarray(grey).astype("<u2") * 257).tobytes())
    assert tiny_codec.decode(tiny_codec.encode(i16)).mode == "L"
    opaque = source_image.convert("RGBA")
    assert tiny_codec.decode(tiny_codec.encode(opaque)).mode == "RGB"
    transparent = opaque.copy()
    transparent.putpixel((0, 0), (1, 2, 3, 0))
    with pytest.raises(ImageError, match="transparency"):
        tiny_codec.encode(transparent)


def test_exif_orientation_is_applied(tiny_codec, source_image):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    buf = io.BytesIO()
    source_image.save(buf, "JPEG", exif=exif.tobytes())
    f = container.parse(tiny_codec.encode(buf.getvalue()))
    assert (f.width, f.height) == (source_image.height, source_image.width)


def test_unreadable_images(tiny_codec):
    with pytest.raises(ImageError):
        tiny_codec.encode(b"definitely not an image")
    with pytest.raises(ImageError):
        tiny_codec.encode((GOLDEN / "source.png").read_bytes()[:200])


def test_rate_is_continuous_and_monotone(tiny_codec, source_image):
    sizes = [len(tiny_codec.encode(source_image, quality=q)) for q in (0, 25, 50, 75, 100)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    f = container.parse(tiny_codec.encode(source_image, quality=37.5))
    assert f.rate_level == pytest.approx(0.375 * tiny_codec.max_level)


def test_target_bpp_search(tiny_codec, source_image):
    big = tiny_codec.encode_detailed(source_image, quality=100)
    target = big.bpp * 0.8
    hit = tiny_codec.encode_detailed(source_image, target_bpp=target)
    assert hit.bpp <= target
    assert hit.level < big.level


def test_model_mismatch_refused(tiny_codec, source_image):
    data = tiny_codec.encode(source_image)
    f = container.parse(data)
    other = container.UgcFile(**{**f.__dict__, "weights_digest": bytes(8)})
    with pytest.raises(ModelMismatchError, match="other weights"):
        tiny_codec.decode(container.build(other))
    other = container.UgcFile(**{**f.__dict__, "model_id": "ugicm-hp-128-192"})
    with pytest.raises(ModelMismatchError, match="made by model"):
        tiny_codec.decode(container.build(other))


def test_garbage_payload_with_valid_crc_is_an_error_or_an_image(tiny_codec, source_image):
    """A crafted file (valid CRC, random rANS bytes) must end in FormatError or a normal image."""
    f = container.parse(tiny_codec.encode(source_image))
    rng = np.random.default_rng(0)
    for _ in range(20):
        chunks = {container.CHUNK_Z: rng.bytes(len(f.z_string)), container.CHUNK_Y: rng.bytes(len(f.y_string))}
        crafted = container.build(container.UgcFile(**{**f.__dict__, "chunks": chunks}))
        try:
            im = tiny_codec.decode(crafted)
        except FormatError:
            continue
        assert im.size == (96, 80)


def test_forward_matches_file_size(tiny_codec, source_image):
    """forward() (training) and compress() (bitstream) agree on the rate."""
    from ugicm_codec.codec import _pad
    from ugicm_codec.models import bits_per_pixel

    x = torch.from_numpy(np.array(source_image)).permute(2, 0, 1)[None].float() / 255
    level = 0.9 * tiny_codec.max_level
    out = tiny_codec.model(_pad(x), torch.tensor([level]), torch.zeros(1))
    estimated_bits = bits_per_pixel(out["likelihoods"], 1).item()
    compressed = tiny_codec.model.compress(_pad(x), level)
    actual_bits = 8 * sum(len(s) for s in compressed["strings"])
    # tiny streams carry a few bytes of rANS flush overhead each
    assert abs(actual_bits - estimated_bits) <= 0.05 * estimated_bits + 64
