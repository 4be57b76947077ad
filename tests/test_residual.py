"""The residual layer: the quality scale's top fifth (residual.py, formats/ugc.md)."""

from __future__ import annotations

import numpy as np
import pytest

from ugicm_codec import container, residual
from ugicm_codec.errors import FormatError
from ugicm_codec.image_io import psnr


def _pair(seed: int = 0, size=(70, 90)) -> tuple[np.ndarray, np.ndarray]:
    """(original, a base decode of it): smooth content plus texture, and a base off by noise."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    smooth = np.stack([xx * 2.5, yy * 3.0, (xx + yy) * 1.4], -1)
    original = np.clip(smooth + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
    base = np.clip(original + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)
    return original, base


def test_round_trip_error_is_bounded_by_the_step():
    original, base = _pair()
    for step in (2.0, 6.0, 13.0):
        out = residual.apply(base, residual.encode(original, base, step))
        rms = np.sqrt(np.mean((out.astype(float) - original) ** 2))
        # dead-zone rounding leaves at most 0.7 step per coefficient; orthonormal transforms keep it
        assert rms <= 0.7 * step + 0.5, step
        assert out.dtype == np.uint8 and out.shape == original.shape


def test_a_finer_step_costs_more_and_gets_closer():
    original, base = _pair(1)
    sizes, quality = [], []
    for step in (20.0, 10.0, 5.0, 2.0):
        payload = residual.encode(original, base, step)
        sizes.append(len(payload))
        quality.append(psnr(original, residual.apply(base, payload)))
    assert sizes == sorted(sizes) and quality == sorted(quality)
    assert quality[0] > psnr(original, base)


def test_nothing_to_code_gives_no_chunk():
    original, _ = _pair()
    assert residual.encode(original, original, 6.0) is None


def test_strips_and_ragged_edges(monkeypatch):
    """Images taller than a strip and sizes that are not whole blocks round-trip the same way."""
    monkeypatch.setattr(residual, "STRIP", 2)
    original, base = _pair(2, size=(45, 37))
    payload = residual.encode(original, base, 4.0)
    out = residual.apply(base, payload)
    assert np.sqrt(np.mean((out.astype(float) - original) ** 2)) <= 0.7 * 4 + 0.5


def test_tables_are_integer_and_complete():
    for i in (0, 1, 16, 100, 254, 255):
        for j in (0, 1, 128, 200, 255):
            freq = residual._pmf(i, j)
            assert len(freq) == 2 * residual.MAGNITUDE + 2
            assert sum(freq) == 1 << residual.PRECISION and min(freq) >= 1
    # P(0) grows with the zero index, the tail with the decay index
    assert residual._pmf(10, 100)[residual.MAGNITUDE] < residual._pmf(60, 100)[residual.MAGNITUDE]
    assert residual._pmf(40, 50)[residual.MAGNITUDE + 5] < residual._pmf(40, 220)[residual.MAGNITUDE + 5]


def test_large_coefficients_escape():
    """Coefficients beyond the table's ±31 go through the coder's escape and come back exactly."""
    original, _ = _pair(3)
    base = np.clip(original.astype(int) - 120, 0, 255).astype(np.uint8)
    q = residual._quantise(residual._forward(original.astype(float) - base), 1.0)
    assert np.abs(q).max() > residual.MAGNITUDE
    out = residual.apply(base, residual.encode(original, base, 1.0))
    assert np.sqrt(np.mean((out.astype(float) - original) ** 2)) <= 0.7 + 0.5


def test_malformed_chunks_are_refused_and_garbage_streams_decode():
    original, base = _pair()
    payload = residual.encode(original, base, 6.0)
    with pytest.raises(FormatError):
        residual.apply(base, payload[:10])
    with pytest.raises(FormatError):
        residual.apply(base, bytes([1]) + payload[1:])  # unknown transform
    with pytest.raises(FormatError):
        residual.apply(base, bytes([0, 0, 3]) + payload[3:])  # a step below one grey level
    header = 3 + residual.CONTEXTS // 8 + 2 * int(np.unpackbits(np.frombuffer(payload[3:39], np.uint8)).sum())
    rng = np.random.default_rng(0)
    for _ in range(5):  # rANS has no invalid codes: garbage decodes to some image, within bounds
        garbage = payload[:header] + rng.integers(0, 256, len(payload) - header, dtype=np.uint8).tobytes()
        assert residual.apply(base, garbage).shape == base.shape


def test_step_mapping_spans_the_top_fifth():
    top = 9.0
    assert residual.top_level(top) == pytest.approx(11.25)
    steps = [residual.step_at(level, top) for level in np.linspace(9.01, 11.25, 8)]
    assert steps == sorted(steps, reverse=True) and steps[-1] == pytest.approx(residual.TOP_STEP)
    with pytest.raises(ValueError):
        residual.step_at(9.0, top)


def test_codec_top_fifth_adds_the_layer_and_every_preference_but_restore_uses_it(tiny_codec, source_image):
    original = np.asarray(source_image)
    q80 = tiny_codec.encode(source_image, quality=80)
    assert container.parse(q80).residual is None
    sizes, quality = [], []
    for q in (85, 90, 100):
        data = tiny_codec.encode(source_image, quality=q)
        f = container.parse(data)
        assert f.residual is not None and f.rate_level == tiny_codec.max_level
        assert f.tiles == container.parse(q80).tiles  # the base layer is the ladder's top
        human = np.asarray(tiny_codec.decode(data, "human"))
        assert np.array_equal(human, np.asarray(tiny_codec.decode(data, "machine")))
        assert np.array_equal(human, np.asarray(tiny_codec.decode(data, 0.5)))
        sizes.append(len(data))
        quality.append(psnr(original, human))
    assert sizes == sorted(sizes) and quality == sorted(quality)
    assert quality[0] > psnr(original, np.asarray(tiny_codec.decode(q80, "human")))


def test_a_reader_that_skips_the_chunk_gets_the_base_layer(tiny_codec, source_image):
    data = tiny_codec.encode(source_image, quality=95)
    f = container.parse(data)
    base = container.build(container.UgcFile(**{**f.__dict__, "residual": None}))
    assert base == tiny_codec.encode(source_image, quality=80)
    stripped = np.asarray(tiny_codec.decode(base, "human"))
    assert not np.array_equal(stripped, np.asarray(tiny_codec.decode(data, "human")))


def test_target_psnr_reaches_above_the_ladder(tiny_codec, source_image):
    """The tiny model's ladder tops out far below 30 dB: only the residual layer gets there."""
    original = np.asarray(source_image)
    hit = tiny_codec.encode_detailed(source_image, target_psnr=30)
    assert hit.target_met and hit.level > tiny_codec.max_level
    assert hit.psnr == psnr(original, np.asarray(tiny_codec.decode(hit.data))) >= 30
    batch = tiny_codec.decode_batch([hit.data, tiny_codec.encode(source_image, quality=40)], stack=True)
    assert np.array_equal(batch[0], np.asarray(tiny_codec.decode(hit.data)))


def test_batched_decodes_apply_the_layer(tiny_codec, source_image):
    files = [tiny_codec.encode(source_image, quality=q) for q in (80, 92, 92)]
    for stack in (False, True):
        decoded = tiny_codec.decode_batch(files, "machine", stack=stack)
        for data, image in zip(files, decoded):
            assert np.array_equal(image, np.asarray(tiny_codec.decode(data, "machine")))


def test_greyscale_files_get_the_layer_and_stay_greyscale(tiny_codec, source_image):
    grey = source_image.convert("L")
    q80, q95 = (tiny_codec.encode(grey, quality=q) for q in (80, 95))
    base, layered = (tiny_codec.decode(d) for d in (q80, q95))
    assert layered.mode == "L" and container.parse(q95).residual is not None
    assert psnr(np.asarray(grey), np.asarray(layered)) > psnr(np.asarray(grey), np.asarray(base)) + 3
