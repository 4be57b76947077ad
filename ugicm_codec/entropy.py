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

import numpy as np
import torch
import torch.nn as nn

from .compressai_seam import BufferedRansEncoder, RansDecoder, quantize_ste
from .layers import ExactStack, checkerboard_phases, set_phases


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

    def exact_at_half(
        self, earlier: torch.Tensor, params: torch.Tensor, parity: int, support
    ) -> torch.Tensor:
        """``forward`` in exact arithmetic on one half of the checkerboard: ``params`` on its
        sub-grids (``checkerboard_phases``), ``earlier`` whole and zero off the half ``support``
        (None: anywhere)."""
        ctx = self.exact_context.at_half(earlier, parity, support)
        return params + self.exact_refine(torch.cat([ctx, params], 1))


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
    # Each half is evaluated only where it is coded, on its two sub-grids (checkerboard_phases):
    # the 1×1 layers and the context convolutions then do half the work or less, and the exact
    # arithmetic makes the values those of the whole-grid evaluation, bit for bit.
    def _coded_groups(self, params: torch.Tensor, y_hat: torch.Tensor, split):
        """Yields (parity, start, end, indexes, means) for each group of each half in coding
        order, on the half's sub-grids. ``params``: the exact h_s output (float64, σ ‖ μ);
        ``y_hat``: ŷ' so far, which the caller fills on the half (``set_phases``) before
        asking for the next group."""
        anchors = 0
        for parity, refinements in ((anchors, self.anchor_groups), (1 - anchors, self.rest_groups)):
            half = checkerboard_phases(params, parity)
            if parity == anchors:
                ctx = half.new_zeros(half.shape[0], self.context_channels, *half.shape[-2:])
            else:
                ctx = self.exact_context.at_half(y_hat, parity, support=anchors)
            half = half + self.exact_refine(torch.cat([half, ctx], 1))
            # within the anchors' pass only anchors are decoded; the rest's sees all of them
            support = anchors if parity == anchors else None
            for k, (start, end) in enumerate(self._slices()):
                p = group_parameters(half, start, end)
                if k > 0:
                    p = refinements[k - 1].exact_at_half(y_hat[:, :start], p, parity, support)
                yield (parity, start, end, *split(p))

    def compress(self, y: torch.Tensor, params: torch.Tensor, split, gc) -> bytes:
        """One rANS stream of y (1×M×H×W, CPU): anchors, then the rest, each group by group,
        each in raster order over the whole grid (channel, row, column).

        ``params`` is the exact h_s output (float64); ``split`` turns parameters into (indexes,
        means); ``gc`` is the model's GaussianConditional, whose tables code the symbols."""
        tables = coder_tables(gc)
        encoder = BufferedRansEncoder()
        y_hat = torch.zeros_like(y)
        for parity, start, end, indexes, means in self._coded_groups(params, y_hat, split):
            symbols = gc.quantize(checkerboard_phases(y[:, start:end], parity), "symbols", means)
            encoder.encode_with_indexes(raster_order(symbols).tolist(), *used_tables(tables, indexes))
            set_phases(y_hat[:, start:end], parity, gc.dequantize(symbols, means))
        return encoder.flush()

    def decompress(self, string: bytes, params: torch.Tensor, split, gc) -> torch.Tensor:
        """ŷ' from the stream written by ``compress`` (the caller guards the stream's end)."""
        tables = coder_tables(gc)
        b, _, h, w = params.shape
        decoder = RansDecoder()
        decoder.set_stream(string)
        y_hat = torch.zeros(b, params.size(1) // 2, h, w)
        for parity, start, end, indexes, means in self._coded_groups(params, y_hat, split):
            values = decoder.decode_stream(*used_tables(tables, indexes))
            # numpy reads a list of ints about 20 times faster than torch.tensor does
            symbols = from_raster_order(torch.from_numpy(np.array(values, dtype=np.int32)), means.shape)
            set_phases(y_hat[:, start:end], parity, gc.dequantize(symbols, means))
        return y_hat


def raster_order(phases: torch.Tensor) -> torch.Tensor:
    """The samples of one half's sub-grids (``checkerboard_phases``) flattened in the order of
    the whole grid, image by image, channel by channel, row by row: the even row's sub-grid row,
    then the odd row's."""
    n2, c, hh, wh = phases.shape
    return phases.reshape(2, n2 // 2, c, hh, wh).permute(1, 2, 3, 0, 4).reshape(-1)


def from_raster_order(flat: torch.Tensor, shape) -> torch.Tensor:
    """The inverse of ``raster_order``: sub-grids of ``shape`` from the flat samples."""
    n2, c, hh, wh = shape
    return flat.reshape(n2 // 2, c, hh, 2, wh).permute(3, 0, 1, 2, 4).reshape(shape)


def group_parameters(params: torch.Tensor, start: int, end: int) -> torch.Tensor:
    """(σ ‖ μ) of channels start…end−1 from the parameters of all channels (σ ‖ μ)."""
    scales, means = params.chunk(2, 1)
    return torch.cat([scales[:, start:end], means[:, start:end]], 1)


def used_tables(tables: tuple[list, list, list], indexes: torch.Tensor) -> tuple[list, list, list, list]:
    """(indexes, cdfs, lengths, offsets) for the rANS coder with only the tables ``indexes`` use,
    renumbered in order: the coder converts every table it is given on every call (8 ms for all
    256), and a group of symbols uses a few dozen of them. The same tables code the same
    symbols, so the bits do not change."""
    flat = raster_order(indexes)
    used, renumbered = torch.unique(flat, return_inverse=True)
    ids = used.tolist()
    cdfs, lengths, offsets = tables
    return renumbered.tolist(), [cdfs[i] for i in ids], [lengths[i] for i in ids], [offsets[i] for i in ids]


def coder_tables(gc) -> tuple[list, list, list]:
    """The CDF tables (each cut to its length), lengths and offsets of an entropy model, as the
    rANS coder takes them. Kept on the model until its tables change: as lists they take 40 ms
    to make (256 × 3133 entries), once per entropy tile otherwise."""
    buffers = (gc._quantized_cdf, gc._cdf_length, gc._offset)
    key = tuple((b.data_ptr(), b._version, tuple(b.shape)) for b in buffers)
    cached = gc.__dict__.get("_ugicm_coder_tables")
    if cached is None or cached[0] != key:
        lengths = gc._cdf_length.reshape(-1).int().tolist()
        tables = (
            [row[:n] for row, n in zip(gc._quantized_cdf.tolist(), lengths)],
            lengths,
            gc._offset.reshape(-1).int().tolist(),
        )
        cached = gc.__dict__["_ugicm_coder_tables"] = (key, tables)
    return cached[1]
