"""Encode/decode through the library with the fixed tiny test model (format, shapes, modes)."""

import io
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import GOLDEN
from ugicm_codec import container, image_io
from ugicm_codec.errors import FormatError, ImageError, ModelMismatchError


def test_golden_files_decode_bit_exactly(tiny_codec):
    for stem in ("tiny-q30", "tiny-q90", "tiny-grey", "tiny-residual"):
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
    # (named for the qualities they were first made at: 0.8·q gives those levels now)
    assert tiny_codec.encode(source_image, quality=24) == (GOLDEN / "tiny-q30.ugc").read_bytes()
    assert tiny_codec.encode(source_image.convert("L"), quality=48) == (GOLDEN / "tiny-grey.ugc").read_bytes()
    assert tiny_codec.encode(source_image, quality=95) == (GOLDEN / "tiny-residual.ugc").read_bytes()


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


def _cmyk_profile(lab: tuple[int, int, int]) -> bytes:
    """A minimal ICC v2 CMYK printer profile (lut8 A2B0, a 2-point grid): bare paper is white,
    full black ink is black, and every other corner is one Lab colour, so a test can tell
    whether a conversion went through it."""
    s15 = lambda v: struct.pack(">i", round(v * 65536))  # noqa: E731
    d50 = s15(0.9642) + s15(1.0) + s15(0.8249)
    # the last input channel (K) varies fastest in the grid
    grid = b"".join(
        bytes([255, 128, 128]) if i == 0 else bytes([0, 128, 128]) if i % 2 else bytes(lab) for i in range(16)
    )
    lut = (
        b"mft1"
        + bytes(4)
        + bytes([4, 3, 2, 0])
        + b"".join(s15(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1))
        + bytes(range(256)) * 4
        + grid
        + bytes(range(256)) * 3
    )
    text = b"test CMYK\0"
    desc = b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + bytes(78)
    tags = [(b"desc", desc), (b"wtpt", b"XYZ " + bytes(4) + d50), (b"A2B0", lut)]
    offset = 128 + 4 + 12 * len(tags)
    table, body = struct.pack(">I", len(tags)), b""
    for signature, data in tags:
        data += bytes(-len(data) % 4)
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += data
    header = (
        struct.pack(">I", offset + len(body))
        + b"lcms"
        + bytes([2, 0x10, 0, 0])
        + b"prtrCMYKLab "
        + bytes(12)
        + b"acsp"
        + bytes(28)
        + d50
        + bytes(48)
    )
    return header + table + body


def test_cmyk_is_converted_through_its_profile(tiny_codec):
    # Full cyan ink: Pillow's formula makes it (0, 255, 255); the test profile says it is
    # an orange-red (Lab 50, +72, +72), and the pixels coded must be what the profile says.
    def saved(fmt, **options):
        buf = io.BytesIO()
        Image.new("CMYK", (64, 48), (255, 0, 0, 0)).save(buf, fmt, **options)
        return Image.open(io.BytesIO(buf.getvalue()))

    plain = image_io.to_picture(saved("TIFF"))
    assert plain.rgb.shape == (48, 64, 3) and (plain.rgb[0, 0] == (0, 255, 255)).all()
    profiled = image_io.to_picture(saved("JPEG", quality=95, icc_profile=_cmyk_profile((128, 200, 200))))
    r, g, b = profiled.rgb.reshape(-1, 3).mean(0)
    assert r > 150 > g and r > b + 50
    assert profiled.icc_profile is None  # a CMYK profile does not describe RGB pixels
    broken = image_io.to_picture(saved("TIFF", icc_profile=b"not a profile"))  # the formula, no error
    assert (broken.rgb == plain.rgb).all()
    data = tiny_codec.encode(saved("JPEG", icc_profile=_cmyk_profile((128, 200, 200))))
    assert container.parse(data).icc_profile is None and tiny_codec.decode(data).mode == "RGB"


@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA"])
def test_alpha_round_trips_losslessly(tiny_codec, source_image, mode):
    rgba = source_image.convert("RGBA")
    alpha = np.zeros((80, 96), np.uint8)
    alpha[10:70, 5:90] = np.arange(85, dtype=np.uint8)[None, :] * 3
    rgba.putalpha(Image.fromarray(alpha))
    im = rgba.convert("LA") if mode == "LA" else rgba.convert("P") if mode == "PA" else rgba
    if mode == "PA":  # a palette image with a transparent index
        im = source_image.convert("P", palette=Image.ADAPTIVE, colors=8)
        im.info["transparency"] = 0
        alpha = np.where(np.asarray(im) == 0, 0, 255).astype(np.uint8)
    data = tiny_codec.encode(im)
    assert container.parse(data).alpha is not None
    out = tiny_codec.decode(data)
    assert out.mode == ("LA" if mode == "LA" else "RGBA")
    assert np.array_equal(np.asarray(out.getchannel("A")), alpha)


def test_metadata_carried_unless_stripped(tiny_codec, source_image):
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "ugicm test camera"
    buf = io.BytesIO()
    source_image.save(buf, "PNG", icc_profile=icc, exif=exif.tobytes())
    out = tiny_codec.decode(tiny_codec.encode(buf.getvalue()))
    assert out.info["icc_profile"] == icc
    carried = Image.Exif()
    carried.load(out.info["exif"])
    assert carried[0x010F] == "ugicm test camera"
    stripped = container.parse(tiny_codec.encode(buf.getvalue(), keep_metadata=False))
    assert stripped.icc_profile is None and stripped.exif is None


def test_sixteen_bit_png_file(tiny_codec, source_image, tmp_path):
    grey16 = np.asarray(source_image.convert("L")).astype(np.uint16) * 257
    path = tmp_path / "g16.png"
    im = Image.new("I;16", source_image.size)
    im.frombytes(grey16.astype("<u2").tobytes())
    im.save(path)
    assert Image.open(path).mode.startswith("I")
    assert tiny_codec.decode(tiny_codec.encode(path)).mode == "L"


def test_tiles_are_seamless(source_image):
    """Many small entropy and synthesis tiles decode to (nearly) the untiled image."""
    from ugicm_codec.codec import Codec

    big = source_image.resize((300, 200))
    whole = Codec(weights=GOLDEN / "tiny", device="cpu", synthesis_tile=1000, entropy_tile=1000)
    tiled = Codec(weights=GOLDEN / "tiny", device="cpu", synthesis_tile=5, entropy_tile=2)
    data = tiled.encode(big, quality=80)
    f = container.parse(data)
    assert len(f.tiles) == 6  # z is 4 x 5, tiles of 2 z samples
    a = np.asarray(whole.decode(data)).astype(float)  # same file, synthesis untiled
    b = np.asarray(tiled.decode(data)).astype(float)
    assert np.abs(a - b).max() <= 1


def test_analysis_tiles_give_the_latent_of_the_whole_image(source_image):
    """ANALYSIS_MARGIN covers g_a's reach: tiles of 128 px give the untiled latent (to float
    rounding), so a large image codes as it would in one piece."""
    from ugicm_codec.codec import Codec, _edge_padded

    padded = _edge_padded(np.asarray(source_image.resize((300, 200))))
    whole = Codec(weights=GOLDEN / "tiny", device="cpu", entropy_tile=1000, precision="float32")
    tiled = Codec(weights=GOLDEN / "tiny", device="cpu", entropy_tile=2, precision="float32")
    a, b = whole._analysis(padded), tiled._analysis(padded)
    assert (a - b).abs().max() <= 1e-4 * a.abs().max()


@pytest.mark.parametrize("arch", ["ugicm-hpr-tiny", "ugicm-hpa-tiny"])
def test_tiles_are_seamless_with_residual_pcdm_blocks(source_image, tmp_path, arch):
    """Residual blocks widen g_s's receptive field to 5.4 latent samples, machine adapters to 8.9
    for beta > 0: the synthesis margin must follow, or tile edges would show (this fails with the
    plain model's margin)."""
    from ugicm_codec.codec import Codec
    from ugicm_codec.models import build_model
    from ugicm_codec.weights import export

    torch.manual_seed(0)
    model = build_model(arch)
    with torch.no_grad():
        for block in list(model.g_s.residuals) + list(model.g_s.adapters or []):
            block.conv1.weight.normal_(0, 0.3)
            block.conv2.weight.normal_(0, 0.3)
        for adapter in model.g_s.adapters or []:
            adapter.gate.weight.normal_(0, 0.1)
    export(model, tmp_path / "model.safetensors")
    big = source_image.resize((300, 200))
    whole = Codec(weights=tmp_path / "model.safetensors", device="cpu", synthesis_tile=1000)
    tiled = Codec(weights=tmp_path / "model.safetensors", device="cpu", synthesis_tile=3)
    data = whole.encode(big, quality=80)
    for prefer in ("human", "machine"):
        a = np.asarray(whole.decode(data, prefer)).astype(float)
        b = np.asarray(tiled.decode(data, prefer)).astype(float)
        assert np.abs(a - b).max() <= 1


def test_exif_orientation_is_applied(tiny_codec, source_image):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    buf = io.BytesIO()
    source_image.save(buf, "JPEG", exif=exif.tobytes())
    f = container.parse(tiny_codec.encode(buf.getvalue()))
    assert (f.width, f.height) == (source_image.height, source_image.width)


def test_unreadable_images(tiny_codec, tmp_path):
    with pytest.raises(ImageError, match="not an image Pillow can read"):
        tiny_codec.encode(b"definitely not an image")
    data = tiny_codec.encode((GOLDEN / "source.png").read_bytes())
    (tmp_path / "coded.ugc").write_bytes(data)
    for coded in (data, tmp_path / "coded.ugc"):
        with pytest.raises(ImageError, match="a .ugc file, not an image: ugicm decode reads it"):
            tiny_codec.encode(coded)
    (tmp_path / "empty.png").touch()
    for empty in (b"", tmp_path / "empty.png"):
        with pytest.raises(ImageError, match="empty file"):
            tiny_codec.encode(empty)
    with pytest.raises(ImageError):
        tiny_codec.encode((GOLDEN / "source.png").read_bytes()[:200])


def test_rate_is_continuous_and_monotone(tiny_codec, source_image):
    sizes = [len(tiny_codec.encode(source_image, quality=q)) for q in (0, 25, 50, 75, 100)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    f = container.parse(tiny_codec.encode(source_image, quality=37.5))
    assert f.rate_level == pytest.approx(0.375 * tiny_codec.top_level) and f.residual is None
    f = container.parse(tiny_codec.encode(source_image, quality=90))  # the top fifth: the residual layer
    assert f.rate_level == tiny_codec.max_level and f.residual is not None


def test_target_bpp_search(tiny_codec, source_image):
    big = tiny_codec.encode_detailed(source_image, quality=100)
    target = big.bpp * 0.8
    hit = tiny_codec.encode_detailed(source_image, target_bpp=target)
    assert hit.bpp <= target
    assert hit.level < big.level


def test_target_size_finds_the_largest_file_within_it(tiny_codec, source_image):
    budget = len(tiny_codec.encode(source_image, quality=95)) - 3  # the tiny model's files: 131-455 bytes
    hit = tiny_codec.encode_detailed(source_image, target_size=budget)
    assert hit.target_met and len(hit.data) <= budget
    # the search stops within 0.2 % of the budget, or where a level 1/4096 of the ladder higher is over it
    higher = tiny_codec.encode(
        source_image, quality=min(100, (hit.level + tiny_codec.top_level / 4096) / tiny_codec.top_level * 100)
    )
    assert len(hit.data) >= 0.998 * budget or len(higher) > budget
    low = tiny_codec.encode_detailed(source_image, target_size=1)
    assert not low.target_met and low.level == 0.0


def test_target_psnr_finds_a_smaller_file_that_reaches_it(default_codec, source_image):
    from ugicm_codec.image_io import psnr

    codec, original = default_codec, np.asarray(source_image)  # the tiny model's PSNR does not grow with rate
    q60 = codec.encode(source_image, quality=60)
    target = psnr(original, np.asarray(codec.decode(q60))) - 0.5
    hit = codec.encode_detailed(source_image, target_psnr=target)
    assert hit.target_met and target <= hit.psnr < target + 0.5 and len(hit.data) < len(q60)
    assert hit.psnr == psnr(original, np.asarray(codec.decode(hit.data)))  # what a decode gets
    top = codec.encode_detailed(source_image, target_psnr=60)
    assert not top.target_met and top.level == codec.top_level and top.psnr < 60
    grey = source_image.convert("L")  # measured on the grey a decode gives, not on the coded RGB
    hit = codec.encode_detailed(grey, target_psnr=target)
    assert hit.psnr == psnr(np.asarray(grey), np.asarray(codec.decode(hit.data))) >= target


@pytest.mark.parametrize(
    "rate",
    [
        dict(quality=50, target_size=100),
        dict(target_bpp=1, target_psnr=30),
        dict(target_size=0),
        dict(target_bpp=-1),
        dict(target_psnr=0),
        dict(target_psnr=101),
    ],
)
def test_a_contradictory_or_impossible_rate_is_refused(tiny_codec, source_image, rate):
    with pytest.raises(ValueError):
        tiny_codec.encode(source_image, **rate)


def test_model_mismatch_refused(tiny_codec, source_image):
    data = tiny_codec.encode(source_image)
    f = container.parse(data)
    other = container.UgcFile(**{**f.__dict__, "weights_digest": bytes(8)})
    with pytest.raises(ModelMismatchError, match="other weights"):
        tiny_codec.decode(container.build(other))
    other = container.UgcFile(**{**f.__dict__, "model_id": "ugicm-hp-128-192"})
    with pytest.raises(ModelMismatchError, match="made by model"):
        tiny_codec.decode(container.build(other))


def test_a_file_of_earlier_weights_says_where_they_are(tiny_codec, source_image, monkeypatch):
    f = container.parse(tiny_codec.encode(source_image))
    old = container.build(
        container.UgcFile(**{**f.__dict__, "weights_digest": bytes.fromhex("5f9d2ae531cff815")})
    )
    monkeypatch.setattr(
        tiny_codec.info,
        "earlier",
        {
            "5f9d2ae531cff815": {
                "architecture": "ugicm-hp-tiny",
                "file": "ugicm-hp-tiny.safetensors",
                "commit": "5126393a1b2c",
            }
        },
    )
    with pytest.raises(
        ModelMismatchError,
        match=r"git show 5126393a1b2c:weights/ugicm-hp-tiny.safetensors "
        r"> ugicm-hp-tiny.safetensors, then decode with --weights",
    ):
        tiny_codec.decode(old)


@pytest.mark.parametrize("codec_fixture", ["tiny_codec", "context_codec"])
def test_garbage_payload_with_valid_crc_is_an_error_or_an_image(codec_fixture, source_image, request):
    """A crafted file (valid CRC, random rANS bytes) must end in FormatError or a normal image."""
    tiny_codec = request.getfixturevalue(codec_fixture)
    f = container.parse(tiny_codec.encode(source_image))
    rng = np.random.default_rng(0)
    for _ in range(20):
        tiles = [(rng.bytes(len(z)), rng.bytes(len(y))) for z, y in f.tiles]
        crafted = container.build(container.UgcFile(**{**f.__dict__, "tiles": tiles}))
        try:
            im = tiny_codec.decode(crafted)
        except FormatError:
            continue
        assert im.size == (96, 80)


def test_forward_matches_file_size(tiny_codec, source_image):
    """forward() (training) and compress() (bitstream) agree on the rate."""
    from ugicm_codec.models import bits_per_pixel

    im = source_image.resize((128, 128))  # a multiple of 64: no padding
    x = torch.from_numpy(np.array(im)).permute(2, 0, 1)[None].float() / 255
    level = 0.9 * tiny_codec.max_level
    out = tiny_codec.model(x, torch.tensor([level]), torch.zeros(1))
    estimated_bits = bits_per_pixel(out["likelihoods"], 1).item()
    compressed = tiny_codec.model.compress(x, level)
    actual_bits = 8 * sum(len(s) for s in compressed["strings"])
    # tiny streams carry a few bytes of rANS flush overhead each
    assert abs(actual_bits - estimated_bits) <= 0.05 * estimated_bits + 64
