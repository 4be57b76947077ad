"""Checkerboard spatial context for the hyperprior's Gaussian conditional (He et al. 2021).

The latent is split like a checkerboard. *Anchors* ((row + column) even) are coded first, with
entropy parameters from the hyperprior alone; the other half is coded next, with parameters that
also see a 5×5 convolution of the decoded anchors around it. Both halves go into one rANS stream,
anchors first, so a ``.ugc`` tile still holds one y string. Decoding costs two passes of the
parameter network instead of an autoregressive scan.

The parameters are the hyperprior's, plus a refinement: (σ, μ) = h_s(ẑ) + R(h_s(ẑ), ctx), where
R's last layer starts at zero, so a model grown from a context-free one codes exactly like it until
trained. As with h_s, both convolution stacks run in exact fixed-point arithmetic
(``layers.ExactStack``) when coding, so encoder and decoder agree on every device.

With channel ``groups`` (uneven, as ELIC's: 16, 16, 32, 64, 64 of 192), each half is coded group
by group, and a group's parameters are refined once more from the groups decoded before it
(``ChannelRefinement``): the anchors of group k see the earlier groups' anchors, the rest see the
earlier groups whole. All anchors still come first, so the spatial context above is unchanged,
and each refinement's last layer also starts at zero: the grouped model grows from the plain one.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .compressai_seam import BufferedRansEncoder, RansDecoder, quantize_ste
from .layers import ExactStack


def anchor_mask(height: int, width: int, device=None) -> torch.Tensor:
    """(1, 1, H, W) bool: True at the anchors, (row + column) even."""
    rows = torch.arange(height, device=device)[:, None]
    cols = torch.arange(width, device=device)[None, :]
    return ((rows + cols) % 2 == 0)[None, None]


class ChannelRefinement(nn.Module):
    """Δ(σ ‖ μ) of one channel group from the groups decoded before it: a 5×5 convolution of
    those, then 1×1 layers that also see the group's current parameters. Starts at zero."""

    def __init__(self, earlier: int, channels: int):
        super().__init__()
        hidden = 2 * channels
        self.context = nn.Conv2d(earlier, hidden, kernel_size=5, padding=2)
        self.refine = nn.Sequential(
            nn.Conv2d(hidden + 2 * channels, hidden, 1),
            nn.ReLU(),
            nn.Conv2d(hidden, 2 * channels, 1),
        )
        nn.init.zeros_(self.refine[-1].weight)
        nn.init.zeros_(self.refine[-1].bias)
        self.exact_context = ExactStack(nn.Sequential(self.context))
        self.exact_refine = ExactStack(self.refine)

    def forward(self, earlier: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        return params + self.refine(torch.cat([self.context(earlier), params], 1))

    def exact(self, earlier: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        return params + self.exact_refine(torch.cat([self.exact_context(earlier), params], 1))


class CheckerboardContext(nn.Module):
    # Sized for fitting on a CPU: M/2 context channels and an M-wide refinement make a context-fit
    # step about a third cheaper than M context channels with ELIC-like 3M / 2.5M hidden widths.
    def __init__(self, M: int, context_channels: int | None = None, groups: tuple[int, ...] = ()):
        super().__init__()
        if groups and sum(groups) != M:
            raise ValueError(f"channel groups {groups} do not add up to {M}")
        self.groups = tuple(groups) or (M,)
        later = [(start, end - start) for start, end in self._slices()[1:]]
        # One refinement per later group and half: the anchors' and the rest's see different things.
        self.anchor_groups = nn.ModuleList(ChannelRefinement(s, c) for s, c in later)
        self.rest_groups = nn.ModuleList(ChannelRefinement(s, c) for s, c in later)
        C = context_channels or M // 2
        self.context = nn.Conv2d(M, C, kernel_size=5, padding=2)
        self.refine = nn.Sequential(
            nn.Conv2d(2 * M + C, M, 1),
            nn.ReLU(),
            nn.Conv2d(M, M, 1),
            nn.ReLU(),
            nn.Conv2d(M, 2 * M, 1),
        )
        nn.init.zeros_(self.refine[-1].weight)
        nn.init.zeros_(self.refine[-1].bias)
        self.exact_context = ExactStack(nn.Sequential(self.context))
        self.exact_refine = ExactStack(self.refine)

    @property
    def context_channels(self) -> int:
        return self.context.out_channels

    # ----------------------------------------------------------------- training path
    def forward(self, y: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Entropy parameters (σ ‖ μ) of every latent sample from y and the hyperprior's h_s
        output, as the decoder will have them: the context sees the anchors quantized (with a
        straight-through gradient), never y itself."""
        b, _, h, w = y.shape
        anchor = anchor_mask(h, w, y.device)
        no_context = params.new_zeros(b, self.context_channels, h, w)
        anchor_params = params + self.refine(torch.cat([params, no_context], 1))
        anchor_params, y_hat_anchors = self._grouped(y, anchor_params, self.anchor_groups, anchor, None)
        ctx = self.context(y_hat_anchors) * ~anchor
        rest_params = params + self.refine(torch.cat([params, ctx], 1))
        if len(self.groups) == 1:  # the rest's parameters are already the anchors' where ctx is 0
            return rest_params
        rest_params, _ = self._grouped(y, rest_params, self.rest_groups, ~anchor, y_hat_anchors)
        return torch.where(anchor, anchor_params, rest_params)

    def _grouped(self, y, params, refinements, half, decoded):
        """One half's parameters refined group by group, and its ŷ (zero off the half). Each
        group sees the earlier groups' ŷ on this half plus ``decoded`` (the other half, if known)."""
        out, y_hat = [], []
        for k, (start, end) in enumerate(self._slices()):
            p = group_parameters(params, start, end)
            if k > 0:
                earlier = torch.cat(y_hat, 1)
                if decoded is not None:
                    earlier = earlier + decoded[:, :start]
                p = refinements[k - 1](earlier, p)
            out.append(p)
            m = p.chunk(2, 1)[1]
            y_hat.append((quantize_ste(y[:, start:end] - m) + m) * half)
        params = torch.cat([torch.cat([p.chunk(2, 1)[i] for p in out], 1) for i in (0, 1)], 1)
        return params, torch.cat(y_hat, 1)

    def _slices(self) -> list[tuple[int, int]]:
        starts = [sum(self.groups[:k]) for k in range(len(self.groups) + 1)]
        return list(zip(starts[:-1], starts[1:]))

    # ----------------------------------------------------------------- bitstream path
    def _exact_parameters(self, params: torch.Tensor, y_hat_anchors: torch.Tensor | None) -> torch.Tensor:
        """float64 parameters, bit-exact: the anchors' (no context) or everyone's."""
        b, _, h, w = params.shape
        if y_hat_anchors is None:
            ctx = params.new_zeros(b, self.context_channels, h, w)
        else:
            ctx = self.exact_context(y_hat_anchors) * ~anchor_mask(h, w)
        return params + self.exact_refine(torch.cat([params, ctx], 1))

    def _exact_group(self, params, k, start, end, refinements, earlier) -> torch.Tensor:
        """Group k's exact parameters (σ ‖ μ) from the half's, refined from ``earlier``."""
        p = group_parameters(params, start, end)
        return p if k == 0 else refinements[k - 1].exact(earlier, p)

    def compress(self, y: torch.Tensor, params: torch.Tensor, split, gc) -> bytes:
        """One rANS stream of y (1×M×H×W, CPU): anchors, then the rest, each group by group.

        ``params`` is the exact h_s output (float64); ``split`` turns parameters into (indexes,
        means); ``gc`` is the model's GaussianConditional, whose tables code the symbols."""
        tables = coder_tables(gc)
        anchor = anchor_mask(*y.shape[-2:])
        encoder = BufferedRansEncoder()
        y_hat = torch.zeros_like(y)
        for half, refinements in ((anchor, self.anchor_groups), (~anchor, self.rest_groups)):
            params_half = self._exact_parameters(params, None if half is anchor else y_hat)
            for k, (start, end) in enumerate(self._slices()):
                indexes, means = split(
                    self._exact_group(params_half, k, start, end, refinements, y_hat[:, :start])
                )
                symbols = gc.quantize(y[:, start:end], "symbols", means)
                mask = half.expand_as(symbols)
                encoder.encode_with_indexes(symbols[mask].tolist(), indexes[mask].tolist(), *tables)
                y_hat[:, start:end] += gc.dequantize(symbols, means) * half
        return encoder.flush()

    def decompress(self, string: bytes, params: torch.Tensor, split, gc) -> torch.Tensor:
        """ŷ' from the stream written by ``compress`` (the caller guards the stream's end)."""
        tables = coder_tables(gc)
        b, _, h, w = params.shape
        anchor = anchor_mask(h, w)
        decoder = RansDecoder()
        decoder.set_stream(string)
        y_hat = torch.zeros(b, params.size(1) // 2, h, w)
        for half, refinements in ((anchor, self.anchor_groups), (~anchor, self.rest_groups)):
            params_half = self._exact_parameters(params, None if half is anchor else y_hat)
            for k, (start, end) in enumerate(self._slices()):
                indexes, means = split(
                    self._exact_group(params_half, k, start, end, refinements, y_hat[:, :start])
                )
                mask = half.expand_as(means)
                values = decoder.decode_stream(indexes[mask].tolist(), *tables)
                symbols = torch.zeros(means.shape, dtype=torch.int32)
                symbols[mask] = torch.tensor(values, dtype=torch.int32)
                y_hat[:, start:end] += torch.where(mask, gc.dequantize(symbols, means), 0.0)
        return y_hat


def group_parameters(params: torch.Tensor, start: int, end: int) -> torch.Tensor:
    """(σ ‖ μ) of channels start…end−1 from the parameters of all channels (σ ‖ μ)."""
    scales, means = params.chunk(2, 1)
    return torch.cat([scales[:, start:end], means[:, start:end]], 1)


def coder_tables(gc) -> tuple[list, list, list]:
    """The CDF tables, lengths and offsets of an entropy model, as the rANS coder takes them.
    Kept on the model until its tables change: as lists they take 40 ms to make (256 × 3133
    entries), once per entropy tile otherwise."""
    buffers = (gc._quantized_cdf, gc._cdf_length, gc._offset)
    key = tuple((b.data_ptr(), b._version, tuple(b.shape)) for b in buffers)
    cached = gc.__dict__.get("_ugicm_coder_tables")
    if cached is None or cached[0] != key:
        tables = (
            gc._quantized_cdf.tolist(),
            gc._cdf_length.reshape(-1).int().tolist(),
            gc._offset.reshape(-1).int().tolist(),
        )
        cached = gc.__dict__["_ugicm_coder_tables"] = (key, tables)
    return cached[1]
