"""Synthesis: decoded latents to pixels, tile by tile, at a chosen precision.

The parse (ŷ, everything the entropy decoder sees) is exact and the same under every precision;
only this last step, g_s, depends on it (formats/ugc.md, "Decode precision"):

- ``float32``, the reference decode: latent tiles of ``REFERENCE_TILE`` samples, one at a time,
  in float32 and torch's default layout, as every release has decoded. Its pixels are the same for
  any thread count (``layers.ThreadInvariantGDN``) and are what the golden files hold.
- ``bfloat16``: the same transform under bf16 autocast. Fast only where the hardware computes in
  bf16 (CUDA, AVX512-BF16 or AMX CPUs: ``hardware.bf16_is_fast``); emulated, and slow, elsewhere.
- ``fast``, the default: the fastest of these that keeps Kodak's PSNR within 0.05 dB of float32's
  on this hardware, channels_last (the inverse GDNs then run as 1×1 convolutions), with larger
  tiles (``FAST_TILE``: a Kodak image is one tile, so nothing is computed twice), on a CPU the
  last two upsamplings in bands of rows, on a GPU tiles of one shape stacked into one batch. Its
  pixels may differ from the reference by a rounding step here and there.

The encoder's analysis runs under the same plan (``Codec._analysis``, ``arithmetic``).

Tiles overlap by as far as g_s's receptive field reaches (the reference decode by one latent
sample more), so that the result has no seams: the share of the work spent on the overlap falls
as tiles grow, (40 + 14)² / 40² = 1.8× for the reference tile against (128 + 12)² / 128² =
1.2× for ``FAST_TILE``, and none for an image that fits in one tile. Memory grows with the tile:
g_s's widest activation is 128 channels at half the output resolution, 134 MB for a 64-sample
tile in float32; on a CPU the fast plan computes the last two upsamplings in bands of
``TAIL_BAND`` rows (``PreferenceSynthesis._tail_in_bands``), so that its widest activation held
whole is at quarter resolution, 160 MB for a 128-sample tile in float32.

``synthesize`` takes a batch of latents of one size and rate level (several files, as
``Codec.decode_batch`` stacks them) and returns their pixels.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .container import LATENT_STRIDE
from .hardware import bf16_is_fast

PRECISIONS = ("fast", "float32", "bfloat16")
DEFAULT_PRECISION = "fast"
REFERENCE_TILE = 40  # latent samples (640 px) per tile side: the reference decode's tiles
FAST_TILE = 128  # latent samples (2048 px): a Kodak image (32x48) is one tile
TAIL_BAND = 32  # rows of g_s's quarter-resolution features per band of its last upsamplings (CPU)
GPU_STACK = 8  # tiles of one shape synthesised together on a GPU


@dataclass(frozen=True)
class Plan:
    """How one synthesis runs: the arithmetic, the tile side, the layout, how many tiles at once."""

    dtype: str  # "float32" or "bfloat16"
    tile: int
    channels_last: bool
    stack: int
    reference: bool
    band: int | None = None  # g_s's last upsamplings in bands of this many rows (PreferenceSynthesis)


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    return precision


def plan(precision: str, device: torch.device, tile: int | None = None) -> Plan:
    """The synthesis plan for ``precision`` on ``device``; ``tile`` overrides the tile side."""
    check_precision(precision)
    gpu = device.type == "cuda"
    if precision == "float32":
        return Plan("float32", tile or REFERENCE_TILE, False, 1, True)
    # bf16 counts as fast only where the hardware has it; on an AVX2-only CPU it is emulated and
    # several times slower than float32, so "fast" stays float32 there.
    dtype = "bfloat16" if precision == "bfloat16" or bf16_is_fast(device.type) else "float32"
    # channels_last: cuDNN's and oneDNN's fast kernels use it (a CPU's bf16 transposed
    # convolutions run twice as fast), and the GDNs keep it (layers.ThreadInvariantGDN).
    return Plan(dtype, tile or FAST_TILE, True, GPU_STACK if gpu else 1, False, None if gpu else TAIL_BAND)


def arithmetic(p: Plan, device: torch.device):
    """The context a transform runs in under plan ``p``: bf16 autocast, or float32 as it is."""
    if p.dtype == "bfloat16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def tiles(y_shape: tuple[int, int], height: int, width: int, tile: int, margin: int):
    """(r0, r1, c0, c1, a0, a1, b0, b1) per tile: the latent rows/columns it outputs and, with
    the margin, the ones it reads. Tiles wholly in the padding below or right of the image are
    left out."""
    yh, yw = y_shape
    s = LATENT_STRIDE
    out = []
    for r0 in range(0, yh, tile):
        if r0 * s >= height:
            break
        r1 = min(r0 + tile, yh)
        for c0 in range(0, yw, tile):
            if c0 * s >= width:
                break
            c1 = min(c0 + tile, yw)
            out.append(
                (
                    r0,
                    r1,
                    c0,
                    c1,
                    max(0, r0 - margin),
                    min(yh, r1 + margin),
                    max(0, c0 - margin),
                    min(yw, c1 + margin),
                )
            )
    return out


def tile_count(
    y_shape, height: int, width: int, precision: str, device: torch.device, tile: int | None = None
) -> int:
    p = plan(precision, device, tile)
    return len(tiles(y_shape, height, width, p.tile, 0))


@torch.no_grad()
def synthesize(
    model,
    y_hat: torch.Tensor,
    rate_level: float,
    beta: float | str,
    height: int,
    width: int,
    precision: str = DEFAULT_PRECISION,
    tile: int | None = None,
    progress: Callable[[int], None] | None = None,
    stack: int | None = None,
) -> np.ndarray:
    """NxHxWx3 uint8 pixels of the NxMxhxw latents ``y_hat`` (ŷ', before the inverse gain) of
    files of one size and rate level, on the device of ``model``'s transforms. ``stack``: how
    many tiles of one shape to synthesise together (default: the plan's, several on a GPU; the
    reference decode always takes one at a time)."""
    device = next(model.g_s.parameters()).device
    p = plan(precision, device, tile)
    if stack and not p.reference:
        p = dataclasses.replace(p, stack=stack)
    s = LATENT_STRIDE
    n = y_hat.shape[0]
    out = np.empty((n, height, width, 3), dtype=np.uint8)
    # g_s's reach (rounded up) keeps each tile's zero padding out of view of the pixels it
    # outputs, so tiles meet without seams; the reference decode reads one sample more, as every
    # release has (its pixels are the golden files').
    margin = model.arch.synthesis_reach(beta) + p.reference
    layout = tiles(tuple(y_hat.shape[-2:]), height, width, p.tile, margin)

    if p.reference:

        def run(latents):  # exactly the reference arithmetic: per tile, gain and PCDM included
            return model.synthesis(latents, rate_level, beta)
    else:
        level = torch.tensor([rate_level], device=device)
        inverse_gain = model.rate.inverse_gain(level)
        embedding, restore = model.decoder_conditioning(beta, level)

        def run(latents):
            x = latents.to(device) * inverse_gain
            if p.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with arithmetic(p, device):
                n = x.shape[0]
                extra = None if restore is None else restore.expand(n, -1)
                return model.g_s(x, embedding.expand(n, -1), extra, p.band).float()

    # Tiles of one shape go through together (p.stack of them at a time, each with all files).
    # One at a time on a CPU: two side by side (workers.tile_map) decoded a 24 MP photo no
    # faster and held 300 MB more.
    groups: dict = {}
    for t in layout:
        r0, r1, c0, c1, a0, a1, b0, b1 = t
        groups.setdefault((a1 - a0, b1 - b0), []).append(t)
    chunks = [
        members[i : i + p.stack] for members in groups.values() for i in range(0, len(members), p.stack)
    ]

    def pixels(chunk) -> list[np.ndarray]:
        """NxHxWx3 uint8 pixels of each tile of ``chunk``, cropped to what it outputs."""
        x = run(torch.cat([y_hat[..., a0:a1, b0:b1] for (_, _, _, _, a0, a1, b0, b1) in chunk]))
        parts = []
        for k, (r0, r1, c0, c1, a0, _a1, b0, _b1) in enumerate(chunk):
            rows = min(r1 * s, height) - r0 * s
            cols = min(c1 * s, width) - c0 * s
            part = x[
                k * n : (k + 1) * n,
                :,
                (r0 - a0) * s : (r0 - a0) * s + rows,
                (c0 - b0) * s : (c0 - b0) * s + cols,
            ]
            parts.append(
                part.clamp_(0, 1).mul_(255).round_().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
            )
        return parts

    done = 0
    for chunk, parts in zip(chunks, map(pixels, chunks)):
        for (r0, _r1, c0, _c1, *_), part in zip(chunk, parts):
            out[:, r0 * s : r0 * s + part.shape[1], c0 * s : c0 * s + part.shape[2]] = part
            done += 1
            if progress is not None:
                progress(done)
    return out
