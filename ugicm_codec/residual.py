"""The residual layer: the high-fidelity end of the rate range, above the learned ladder's top.

The learned transforms cap what the ladder can reach (decoded from the unrounded latent, the
shipped g_a/g_s give about 38 dB on Kodak), so qualities above the ladder code, beside the top
level's latent, the difference between the image and that latent's reference decode: an
orthonormal opponent colour transform, an 8×8 orthonormal DCT-II, a uniform quantiser of step
Δ (dead-zone rounding in the encoder) and rANS with context-adaptive tables. It is added to
the human decode, which every preference but restore then decodes to (``codec._layered``); it
is an ancillary chunk, so a reader that does not know it decodes the base layer. The format is
in formats/ugc.md ("The residual layer").

Entropy coding is exact like the latent's: a symbol's table depends only on integers (its
channel, its frequency band, and how many coefficients of lower bands in its block are not
zero), and the tables are built from two bytes per context with integer arithmetic. The pixel
arithmetic (DCT, colour) is float64; it changes pixels by rounding noise at most, never the parse.

numpy only (and CompressAI's rANS coder through the seam): no torch.
"""

from __future__ import annotations

import math
import struct

import numpy as np

from .errors import FormatError

# The quality scale's top fifth is the residual layer: q 80 is the ladder's top level, and from
# there to q 100 the step falls geometrically from 6·2^2.25 ≈ 28.5 grey levels (hardly a change
# to the picture) to 6 (about 44 dB on Kodak).
SHARE = 0.2
TOP_STEP = 6.0
STEP_OCTAVES = 2.25
BLOCK = 8
CHANNELS = 3
BANDS = 12  # frequency bands u+v = 0 … 10, then 11 for every u+v ≥ 11
CLASSES = 8  # nonzero coefficients in the block's lower bands: 0 … 7 or more
CONTEXTS = CHANNELS * BANDS * CLASSES
MAGNITUDE = 31  # symbols −31 … 31 in the table; beyond, the escape and rANS bypass bits
PRECISION = 16  # CDF precision of the rANS coder (CompressAI's)
STEP_UNIT = 16  # Δ is stored in 1/16 of a grey level
MIN_STEP = 1.0
MAX_STEP = 4095.0
DEAD_ZONE = 0.3  # encoder rounding offset: |c|/Δ + 0.3, floored; cheaper than 0.5 at equal PSNR
STRIP = 64  # block rows per strip: memory stays bounded on large images
_HEADER = struct.Struct(">BH")  # transform (0), step in 1/16 grey levels
_BITMAP = CONTEXTS // 8

# Orthonormal: the mean, red − blue, and red − 2·green + blue; an orthonormal transform keeps
# squared error, so a step Δ costs the same PSNR in every channel.
_COLOUR = np.array([[1, 1, 1], [1, 0, -1], [1, -2, 1]], dtype=np.float64)
_COLOUR /= np.linalg.norm(_COLOUR, axis=1, keepdims=True)
_k = np.arange(BLOCK)
_DCT = np.sqrt(2.0 / BLOCK) * np.cos(np.pi * (2 * _k[None, :] + 1) * _k[:, None] / (2 * BLOCK))
_DCT[0] /= np.sqrt(2.0)
_DIAGONAL = _k[:, None] + _k[None, :]  # u+v of each coefficient
_ORDER = [np.flatnonzero(_DIAGONAL.ravel() == d) for d in range(2 * BLOCK - 1)]


def encode(original: np.ndarray, base: np.ndarray, step: float) -> bytes | None:
    """The chunk's payload that takes ``base`` (HxWx3 uint8, the reference decode) towards
    ``original`` (HxWx3 uint8) with quantiser step ``step`` grey levels; None when every
    coefficient quantises to zero (the chunk would change nothing)."""
    steps = check_step(step)
    delta = steps / STEP_UNIT
    symbols = [
        _quantise(_forward(original[r0:r1].astype(np.float64) - base[r0:r1]), delta)
        for r0, r1 in _strips(original.shape[0])
    ]
    if not any(q.any() for q in symbols):
        return None
    contexts = [_contexts(q) for q in symbols]
    counts = np.zeros((CONTEXTS, 2), np.int64)  # per context: symbols, zeros
    magnitude = np.zeros(CONTEXTS, np.int64)  # per context: Σ |q| over nonzero symbols
    for q, ctx in zip(symbols, contexts):
        flat, c = q.reshape(-1), ctx.reshape(-1)
        np.add.at(counts[:, 0], c, 1)
        np.add.at(counts[:, 1], c, flat == 0)
        np.add.at(magnitude, c, np.abs(flat))
    present = counts[:, 0] > 0
    params = [_fit(*counts[i], magnitude[i]) for i in np.flatnonzero(present)]
    tables = _tables(present, params)
    from .compressai_seam import BufferedRansEncoder

    coder = BufferedRansEncoder()
    for q, ctx in zip(symbols, contexts):
        for d, channel in _passes():
            coder.encode_with_indexes(
                q[channel][:, _ORDER[d]].reshape(-1).tolist(),
                ctx[channel][:, _ORDER[d]].reshape(-1).tolist(),
                *tables,
            )
    header = (
        _HEADER.pack(0, steps)
        + np.packbits(present).tobytes()
        + bytes(np.array(params, np.uint8).reshape(-1))
    )
    return header + coder.flush()


def apply(base: np.ndarray, payload: bytes) -> np.ndarray:
    """``base`` (HxWx3 uint8) with the residual layer of ``payload`` added (a new array)."""
    delta, present, params, stream = _parse(payload)
    tables = _tables(present, params)
    from .compressai_seam import RansDecoder, guard_stream

    h, w = base.shape[:2]
    blocks = -(-h // BLOCK) * -(-w // BLOCK)
    decoder = RansDecoder()
    decoder.set_stream(guard_stream(stream, blocks * BLOCK * BLOCK * CHANNELS))
    out = np.empty_like(base)
    for r0, r1 in _strips(h):
        rows, cols = -(-(r1 - r0) // BLOCK), -(-w // BLOCK)
        q = np.zeros((CHANNELS, rows * cols, BLOCK * BLOCK), np.int64)
        nonzero = np.zeros((CHANNELS, rows * cols), np.int64)
        for d, channel in _passes():
            ctx = _context_index(channel, d, nonzero[channel])
            index = np.repeat(ctx[:, None], len(_ORDER[d]), 1).reshape(-1)
            values = np.asarray(decoder.decode_stream(index.tolist(), *tables), np.int64)
            q[channel][:, _ORDER[d]] = values.reshape(rows * cols, -1)
            nonzero[channel] += (values.reshape(rows * cols, -1) != 0).sum(1)
        residual = _inverse(q * delta, rows, cols)[: r1 - r0, :w]
        out[r0:r1] = np.clip(np.rint(base[r0:r1] + residual), 0, 255).astype(np.uint8)
    return out


def top_level(ladder_top: float) -> float:
    """The highest rate level, the residual layer's end, of a ladder whose top is ``ladder_top``."""
    return ladder_top / (1 - SHARE)


def step_at(level: float, ladder_top: float) -> float:
    """The quantiser step (grey levels) at a rate level above the ladder's top."""
    fraction = (level - ladder_top) / (top_level(ladder_top) - ladder_top)
    if not 0 < fraction <= 1:
        raise ValueError(
            f"rate level {level} is not above the ladder's top {ladder_top} and within its range"
        )
    return TOP_STEP * 2 ** (STEP_OCTAVES * (1 - fraction))


def check_step(step: float) -> int:
    """Δ in the file's units (1/16 grey level); ValueError outside [1, 4095] grey levels."""
    if not MIN_STEP <= step <= MAX_STEP or math.isnan(step):
        raise ValueError(f"residual step must be in [{MIN_STEP:g}, {MAX_STEP:g}] grey levels, not {step}")
    return int(round(step * STEP_UNIT))


def describe(payload: bytes) -> dict:
    """What ``ugicm info`` shows of a residual chunk (parsed, not decoded)."""
    delta, present, _, stream = _parse(payload)
    return {"step": delta, "contexts": int(present.sum()), "stream_bytes": len(stream)}


# ---------------------------------------------------------------------------------- transform
def _strips(height: int):
    rows = STRIP * BLOCK
    for r0 in range(0, height, rows):
        yield r0, min(r0 + rows, height)


def _forward(residual: np.ndarray) -> np.ndarray:
    """CHANNELS × blocks × 64 DCT coefficients of an HxWx3 residual, edge-padded to whole blocks."""
    h, w = residual.shape[:2]
    ph, pw = -(-h // BLOCK) * BLOCK, -(-w // BLOCK) * BLOCK
    r = np.pad(residual @ _COLOUR.T, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    blocks = r.reshape(ph // BLOCK, BLOCK, pw // BLOCK, BLOCK, CHANNELS).transpose(4, 0, 2, 1, 3)
    coefficients = _DCT @ blocks @ _DCT.T
    return coefficients.reshape(CHANNELS, -1, BLOCK * BLOCK)


def _inverse(coefficients: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """The HxWx3 residual (padded to whole blocks) of CHANNELS × blocks × 64 coefficients."""
    c = coefficients.reshape(CHANNELS, rows, cols, BLOCK, BLOCK)
    pixels = _DCT.T @ c @ _DCT
    planes = pixels.transpose(1, 3, 2, 4, 0).reshape(rows * BLOCK, cols * BLOCK, CHANNELS)
    return planes @ _COLOUR


def _quantise(coefficients: np.ndarray, delta: float) -> np.ndarray:
    return (np.sign(coefficients) * np.floor(np.abs(coefficients) / delta + DEAD_ZONE)).astype(np.int32)


# ---------------------------------------------------------------------------------- contexts
def _passes():
    """The coding order within a strip: band by band (u+v), and channel by channel within each."""
    for d in range(2 * BLOCK - 1):
        for channel in range(CHANNELS):
            yield d, channel


def _context_index(channel: int, d: int, nonzero: np.ndarray) -> np.ndarray:
    return (channel * BANDS + min(d, BANDS - 1)) * CLASSES + np.minimum(nonzero, CLASSES - 1)


def _contexts(q: np.ndarray) -> np.ndarray:
    """The context of every symbol of one strip (CHANNELS × blocks × 64), as the decoder sees it."""
    ctx = np.empty_like(q)
    nonzero = np.zeros(q.shape[:2], np.int64)
    for d, channel in _passes():
        order = _ORDER[d]
        ctx[channel][:, order] = _context_index(channel, d, nonzero[channel])[:, None]
        nonzero[channel] += (q[channel][:, order] != 0).sum(1)
    return ctx


# ---------------------------------------------------------------------------------- tables
def _fit(symbols: int, zeros: int, magnitude: int) -> tuple[int, int]:
    """(zero index, decay index) of a context from its counts: P(0) = 1 − 2^(−i/16), and
    |q| ≥ 1 geometric with ratio j/256 (its mean is 256/(256 − j))."""
    p0 = min(max(zeros / symbols, 1e-6), 1 - 2**-16)
    i = int(round(-16 * math.log2(1 - p0)))
    nonzero = symbols - zeros
    mean = magnitude / nonzero if nonzero else 1.0
    j = int(round(256 * (1 - 1 / mean)))
    return min(max(i, 0), 255), min(max(j, 0), 255)


def _pmf(i: int, j: int) -> list[int]:
    """Integer frequencies (sum 2^16, each ≥ 1) of symbols −MAGNITUDE … MAGNITUDE and the escape.
    Integer arithmetic only, so every decoder builds the same table."""
    n = 2 * MAGNITUDE + 2
    budget = (1 << PRECISION) - n  # one count is given to every symbol first
    # P(0) = 1 − 2^(−i/16): budget − budget · 2^(−(i mod 16)/16) · 2^(−⌊i/16⌋), in fixed point
    zero = budget - (budget * _POW2_FRAC[i % 16] >> (32 + i // 16))
    geometric, g = [], 1 << 20
    for _ in range(MAGNITUDE):
        geometric.append(g)
        g = g * j >> 8
    rest, total = budget - zero, 2 * sum(geometric)
    side = [rest * g // total for g in geometric]
    freq = [1 + f for f in reversed(side)] + [1 + zero] + [1 + f for f in side] + [1]
    freq[MAGNITUDE] += (1 << PRECISION) - sum(freq)  # what the floors left over goes to zero
    return freq


# round(2^(32 − k/16)) for k = 0 … 15: written out, as the format fixes them
_POW2_FRAC = [
    4294967296,
    4112874773,
    3938502376,
    3771522796,
    3611622603,
    3458501653,
    3311872529,
    3171459999,
    3037000500,
    2908241642,
    2784941738,
    2666869345,
    2553802834,
    2445529972,
    2341847524,
    2242560872,
]


def _tables(present: np.ndarray, params: list[tuple[int, int]]) -> tuple[list, list, list]:
    """CDF tables of every context (absent ones get the all-zero table), lengths and offsets,
    as CompressAI's rANS coder takes them."""
    chosen = iter(params)
    cdfs = []
    for used in present:
        freq = _pmf(*next(chosen)) if used else _pmf(255, 0)
        cdfs.append(np.concatenate([[0], np.cumsum(freq)]).tolist())
    return cdfs, [2 * MAGNITUDE + 3] * CONTEXTS, [-MAGNITUDE] * CONTEXTS


def _parse(payload: bytes) -> tuple[float, np.ndarray, list[tuple[int, int]], bytes]:
    fixed = _HEADER.size + _BITMAP
    if len(payload) < fixed:
        raise FormatError("residual chunk is too short")
    transform, steps = _HEADER.unpack_from(payload)
    if transform != 0:
        raise FormatError(f"residual chunk has unknown transform {transform}")
    if not MIN_STEP * STEP_UNIT <= steps <= MAX_STEP * STEP_UNIT:
        raise FormatError(f"residual chunk has step {steps / STEP_UNIT:g} outside [1, 4095]")
    present = np.unpackbits(np.frombuffer(payload, np.uint8, _BITMAP, _HEADER.size)).astype(bool)
    n = int(present.sum())
    if len(payload) < fixed + 2 * n:
        raise FormatError("residual chunk is too short for its context tables")
    raw = payload[fixed : fixed + 2 * n]
    params = [(raw[2 * k], raw[2 * k + 1]) for k in range(n)]
    return steps / STEP_UNIT, present, params, payload[fixed + 2 * n :]
