"""The .ugc container parser: round trips, and a clean FormatError for every kind of damage."""

import io
import random
import subprocess
import sys
import zlib

import pytest
from PIL import Image

from conftest import GOLDEN
from ugicm_codec import container
from ugicm_codec.container import CHUNK_TILE, UgcFile
from ugicm_codec.errors import FormatError, LimitError


def sample(width=100, height=70, **kw) -> UgcFile:
    y, z = container.latent_shapes(width, height)
    fields = dict(
        model_id="ugicm-hp-tiny",
        weights_digest=bytes(range(8)),
        width=width,
        height=height,
        colour_mode="RGB",
        rate_level=2.5,
        y_shape=y,
        z_shape=z,
        tiles=[(b"zz-stream", b"y" * 300)],
    )
    fields.update(kw)
    return UgcFile(**fields)


def test_round_trip():
    f = sample()
    g = container.parse(container.build(f))
    assert (g.width, g.height, g.model_id, g.weights_digest, g.rate_level) == (
        100,
        70,
        "ugicm-hp-tiny",
        bytes(range(8)),
        2.5,
    )
    assert g.tiles == [(b"zz-stream", b"y" * 300)]
    assert g.y_shape == (8, 8) and g.z_shape == (2, 2)


def test_layout_matches_spec():
    data = container.build(sample())
    assert data[:8] == b"\x89UGC\r\n\x1a\n" and data[8] == 1 and data[9] == 0
    n = data[10]
    assert data[11 : 11 + n] == b"ugicm-hp-tiny"
    assert int.from_bytes(data[19 + n : 23 + n], "big") == 100
    assert int.from_bytes(data[23 + n : 27 + n], "big") == 70
    assert int.from_bytes(data[-4:], "big") == zlib.crc32(data[:-4])


@pytest.mark.parametrize("cut", [0, 1, 7, 8, 20, 44, 60, -5, -4, -1])
def test_truncation(cut):
    data = container.build(sample())
    with pytest.raises(FormatError):
        container.parse(data[:cut])


def test_every_prefix_and_bit_flip_is_refused():
    data = container.build(sample())
    for cut in range(len(data)):
        with pytest.raises(FormatError):
            container.parse(data[:cut])
    rng = random.Random(0)
    for _ in range(300):
        flipped = bytearray(data)
        i = rng.randrange(len(flipped))
        flipped[i] ^= 1 << rng.randrange(8)
        with pytest.raises(FormatError):
            container.parse(bytes(flipped))


def refreshed(body: bytes) -> bytes:
    """A body with a valid CRC: damage that a CRC cannot see, as a crafted file would have."""
    return body + zlib.crc32(body).to_bytes(4, "big")


def test_crafted_lengths_and_sizes():
    body = container.build(sample())[:-4]
    n = body[10]
    # a chunk length pointing far beyond the end of the file
    i = body.index(CHUNK_TILE) + 4
    crafted = body[:i] + (2**31).to_bytes(4, "big") + body[i + 4 :]
    with pytest.raises(FormatError):
        container.parse(refreshed(crafted))
    # 1,000,000 x 1,000,000 pixels: refused by the limit, before any allocation
    huge = body[: 19 + n] + (10**6).to_bytes(4, "big") * 2 + body[27 + n :]
    with pytest.raises(LimitError, match="exceeds the limit"):
        container.parse(refreshed(huge))
    # width 0
    zero = body[: 19 + n] + (0).to_bytes(4, "big") + body[23 + n :]
    with pytest.raises(FormatError):
        container.parse(refreshed(zero))
    # trailing garbage inside the CRC
    with pytest.raises(FormatError):
        container.parse(refreshed(body + b"xx"))


def test_latent_shape_mismatch_and_chunks():
    with pytest.raises(FormatError, match="latent shapes"):
        container.parse(container.build(sample(y_shape=(9, 9))))
    with pytest.raises(FormatError, match="unknown critical chunk"):
        container.parse(container.build(sample(extra_chunks={b"XTRA": b"c"})))
    with pytest.raises(FormatError, match="tiles"):
        container.parse(container.build(sample(tiles=[])))
    with pytest.raises(FormatError, match="tiles"):
        container.parse(container.build(sample(tiles=[(b"a", b"b")] * 2)))
    # an ancillary chunk is kept aside, the rest reads normally
    f = container.parse(container.build(sample(extra_chunks={b"note": b"hi"})))
    assert f.tiles == [(b"zz-stream", b"y" * 300)] and f.extra_chunks == {b"note": b"hi"}


def test_tile_grid_and_metadata():
    # 3000 x 2100 pixels: z is 47 x 33, tiles of 16 z samples: 3 x 3 tiles
    y, z = container.latent_shapes(3000, 2100)
    grid = container.tile_grid(z, 16)
    assert z == (33, 47) and len(grid) == 9 and grid[-1] == (32, 32, 1, 15)
    f = sample(
        width=3000,
        height=2100,
        y_shape=y,
        z_shape=z,
        tiles=[(b"z%d" % i, b"y") for i in range(9)],
        alpha=b"A",
        icc_profile=b"icc",
        exif=b"exif",
    )
    g = container.parse(container.build(f))
    assert g.tiles == f.tiles and (g.alpha, g.icc_profile, g.exif) == (b"A", b"icc", b"exif")


def test_other_formats_refused():
    with pytest.raises(FormatError, match="not a .ugc file .*it is a PNG image, which ugicm encode"):
        container.parse((GOLDEN / "source.png").read_bytes())
    with pytest.raises(FormatError, match=r"not a .ugc file \(bad magic\)$"):
        container.parse(b"plain text, long enough to have a header" * 4)
    with pytest.raises(FormatError, match="version"):
        data = bytearray(container.build(sample()))
        data[8] = 2
        container.parse(refreshed(bytes(data[:-4])))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF", "TIFF", "BMP"])
def test_image_formats_are_named(fmt):
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, fmt)
    assert container.image_format(buf.getvalue()) == {"WEBP": "WebP"}.get(fmt, fmt)
    assert container.image_format(container.build(sample())) is None


def test_info_does_not_import_torch():
    code = (
        "import sys; from ugicm_codec.cli import main; "
        "from click.testing import CliRunner; "
        f"r = CliRunner().invoke(main, ['info', r'{GOLDEN / 'tiny-q30.ugc'}', r'{GOLDEN / 'tiny-residual.ugc'}']); "
        "assert r.exit_code == 0 and 'residual    step' in r.output, r.output; "
        "print('torch' in sys.modules, 'compressai' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
