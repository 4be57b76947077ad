"""Building blocks of the UG-ICM model that CompressAI does not provide.

- ``PreferenceEmbedding``: beta -> Fourier features -> 2-layer MLP (the PCDM embedding).
- ``PreferenceBias`` / ``PreferenceResidual``: where that embedding enters the decoder blocks.
- ``MachineAdapter``: a residual block gated by the preference, closed at beta = 0.
- ``RateGain``: learned gain / inverse-gain vectors on y for a ladder of lambdas, interpolated
  geometrically between neighbours (Cui et al. 2021), so one set of weights covers a continuous rate.
- ``exact_forward``: runs a conv stack in fixed point on float64 so the result is bit-exact on any
  device, thread count or batch size (see formats/ugc.md, "Deterministic entropy parameters").
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .compressai_seam import GDN


class PreferenceEmbedding(nn.Module):
    """Embeds the preference beta in [0, 1] (0 = human, 1 = machine), and with ``rate_aware`` the
    rate level too (as a fraction of the ladder, in [0, 1]).

    Fixed Fourier features make the MLP see beta at several frequencies, so a small MLP can give
    beta=0 and beta=1 very different embeddings while intermediate values stay smooth. The rate
    level lets one machine decode correct 0.2 bpp differently from 1.6 bpp: the semantic loss
    helps the first and, with a correction shared across rates, hurt the second.
    """

    def __init__(self, num_frequencies: int = 8, dim: int = 128, rate_aware: bool = False):
        super().__init__()
        self.rate_aware = rate_aware
        self.register_buffer(
            "frequencies", (2.0 ** torch.arange(num_frequencies)) * math.pi / 2, persistent=False
        )
        features = (2 * num_frequencies + 1) * (2 if rate_aware else 1)
        self.mlp = nn.Sequential(nn.Linear(features, dim), nn.GELU(), nn.Linear(dim, dim))

    def _fourier(self, value: torch.Tensor) -> torch.Tensor:
        angles = value * self.frequencies
        return torch.cat([value, torch.sin(angles), torch.cos(angles)], dim=1)

    def forward(self, beta: torch.Tensor, rate_fraction: torch.Tensor | None = None) -> torch.Tensor:
        features = self._fourier(beta.reshape(-1, 1).float())
        if self.rate_aware:
            rate = rate_fraction.reshape(-1, 1).float().expand(features.size(0), 1)
            features = torch.cat([features, self._fourier(rate)], dim=1)
        return self.mlp(features)

    def offset(self, beta: torch.Tensor, rate_fraction: torch.Tensor | None = None) -> torch.Tensor:
        """e(beta) - e(0) at the same rate: exactly zero for beta = 0, whatever the weights. A
        decoder fed this instead of e(beta) gives the human decode from its biases alone, so
        nothing trained for beta = 1 (the MLP, the projection weights) can change it."""
        zero = torch.zeros_like(beta.reshape(-1).float())
        return self(beta, rate_fraction) - self(zero, rate_fraction)


class ThreadInvariantGDN(GDN):
    """CompressAI's GDN / inverse GDN, with its 1×1 normalisation convolution computed as a matrix
    product: same parameters, same maths. oneDNN's 1×1 convolution splits the channel sum
    differently with 1 and 2 threads (1-ulp differences, enough to flip a decoded
    pixel), while the GEMM only partitions its output, so the decoder gives the same bits for any
    thread count. Used in the synthesis transform, where decodes must be reproducible.

    A channels-last input (the fast decode, ``synthesis.plan``) takes the 1×1 convolution
    instead, with β as its bias: it keeps the layout and, under bf16 autocast, the dtype of the
    layers around it, where the matrix product's reshape and float32 β made two copies of the
    decoder's largest activation each way (a third of a Kodak decode's synthesis time)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        beta = self.beta_reparam(self.beta)
        gamma = self.gamma_reparam(self.gamma)
        if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
            norm = F.conv2d(x * x, gamma[:, :, None, None], beta)
            if not torch.is_grad_enabled():  # in place: one activation-sized buffer fewer at the peak
                return (norm.sqrt_() if self.inverse else norm.rsqrt_()).mul_(x)
        else:
            norm = torch.matmul(gamma, (x * x).reshape(n, c, h * w)).reshape(n, c, h, w) + beta[:, None, None]
        return x * (torch.sqrt(norm) if self.inverse else torch.rsqrt(norm))


class PreferenceBias(nn.Module):
    """Per-channel bias projected from the preference embedding (one per decoder block)."""

    def __init__(self, embed_dim: int, channels: int):
        super().__init__()
        self.proj = nn.Linear(embed_dim, channels)
        # Zero init: the preference starts as a no-op, and training moves beta=1 away from beta=0.
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        bias = self.proj(embedding).to(x.dtype)
        return x + bias[:, :, None, None]


class PreferenceResidual(nn.Module):
    """A residual decoder block with its own PCDM: h + conv(LeakyReLU(conv(h) + bias(beta))).

    The preference bias sits before the nonlinearity, so beta can switch features of the branch on
    and off rather than only shift them (a bias on a block's input is, through the next linear
    layer, little more than a constant offset). The last convolution starts at zero: a model grown
    from one without these blocks decodes exactly as before until training moves them.
    """

    def __init__(self, embed_dim: int, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bias = PreferenceBias(embed_dim, channels)
        self.act = nn.LeakyReLU(0.2)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.bias(self.conv1(x), embedding)))


class MachineAdapter(nn.Module):
    """Decoder capacity of the machine decode alone: h + gate(e) ⊙ conv(LeakyReLU(conv(h))).

    The per-channel gate is a projection (without bias) of the preference offset e(beta) - e(0),
    so it is exactly zero at beta = 0: the human decode skips the block, costs nothing more, and
    gives its convolutions no gradient. The gate starts at zero, so a model grown with these
    blocks decodes as before until training opens them.
    """

    def __init__(self, embed_dim: int, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = nn.LeakyReLU(0.2)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.gate = nn.Linear(embed_dim, channels, bias=False)
        nn.init.zeros_(self.gate.weight)

    def forward(self, x: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        if not torch.any(offset):
            return x
        gate = self.gate(offset).to(x.dtype)[:, :, None, None]
        return x + gate * self.conv2(self.act(self.conv1(x)))


class RateGain(nn.Module):
    """Gain (encoder side) and inverse gain (decoder side) vectors for a ladder of rate points.

    ``level`` is continuous in [0, levels-1]; between ladder points the vectors are interpolated
    geometrically, g = g_i^(1-t) * g_{i+1}^t, which is what makes the rate continuous.
    """

    def __init__(self, levels: int, channels: int, init_gains: list[float] | None = None):
        super().__init__()
        if init_gains is None:
            init_gains = [1.0] * levels
        init = torch.tensor(init_gains, dtype=torch.float32)[:, None].expand(levels, channels)
        # Stored as logs: interpolation is linear in log space, and gains stay positive.
        self.log_gain = nn.Parameter(init.log().clone())
        self.log_inverse_gain = nn.Parameter((-init.log()).clone())

    @property
    def levels(self) -> int:
        return self.log_gain.shape[0]

    def _interpolate(self, table: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        level = level.reshape(-1).float().clamp(0, self.levels - 1)
        low = level.floor().clamp(max=self.levels - 2).long()
        t = (level - low.float())[:, None]
        mixed = table[low] * (1 - t) + table[low + 1] * t
        return mixed.exp()[:, :, None, None]

    def gain(self, level: torch.Tensor) -> torch.Tensor:
        return self._interpolate(self.log_gain, level)

    def inverse_gain(self, level: torch.Tensor) -> torch.Tensor:
        return self._interpolate(self.log_inverse_gain, level)


# Fixed-point format of the exact hyper-synthesis. Activations are multiples of 2^-ACT_BITS in
# [0, ACT_MAX], weights multiples of 2^-WEIGHT_BITS with |w| <= WEIGHT_MAX. Every product is then a
# multiple of 2^-(ACT_BITS + WEIGHT_BITS) and every partial sum stays below 2^53 of those units,
# so float64 represents all of them exactly and the summation order cannot change the result.
ACT_BITS = 8
ACT_MAX = 4096.0
WEIGHT_BITS = 12
WEIGHT_MAX = 128.0
_MAX_FAN_IN = 2**53 / (ACT_MAX * WEIGHT_MAX * 2 ** (ACT_BITS + WEIGHT_BITS))


def _to_grid(x: torch.Tensor, bits: int) -> torch.Tensor:
    scale = float(2**bits)
    return torch.floor(x * scale + 0.5) / scale


def _to_grid_(x: torch.Tensor, low: float, high: float, bits: int) -> torch.Tensor:
    """``_to_grid(x.clamp(low, high), bits)`` in place on a float64 tensor of ours: the same IEEE
    operations in the same order, so the same values, without five float64 temporaries."""
    scale = float(2**bits)
    return x.clamp_(low, high).mul_(scale).add_(0.5).floor_().div_(scale)


def quantize_weight(w: torch.Tensor) -> torch.Tensor:
    return _to_grid_(w.to(torch.float64, copy=True), -WEIGHT_MAX, WEIGHT_MAX, WEIGHT_BITS)


def quantize_activation(x: torch.Tensor) -> torch.Tensor:
    return _to_grid_(x.to(torch.float64, copy=True), 0.0, ACT_MAX, ACT_BITS)


class ExactStack:
    """Evaluates a stack of Conv2d / ConvTranspose2d / ReLU layers bit-exactly on the CPU.

    The input is snapped to the activation grid (in practice integer latents plus medians), each
    layer uses grid weights and a bias on the accumulator grid, and each ReLU output is snapped
    back to the activation grid. The grid weights are computed once and reused until the
    layers' parameters change (they do not at inference; they do while training).
    """

    def __init__(self, layers: nn.Sequential):
        self.layers = layers
        self._key = None
        self._ops: list = []

    def _parameters_key(self):
        return tuple((p.data_ptr(), p._version) for p in self.layers.parameters())

    def _prepare(self) -> None:
        ops = []
        for layer in self.layers:
            if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
                transposed = isinstance(layer, nn.ConvTranspose2d)
                w = layer.weight
                fan_in = w.shape[0] * w.shape[2] * w.shape[3] if transposed else w[0].numel()
                if fan_in > _MAX_FAN_IN:
                    raise ValueError(f"layer fan-in {fan_in} too large for exact evaluation")
                ops.append(
                    (
                        "deconv" if transposed else "conv",
                        quantize_weight(w.detach().cpu()),
                        _to_grid(layer.bias.detach().cpu().double(), ACT_BITS + WEIGHT_BITS),
                        layer,
                    )
                )
            elif isinstance(layer, nn.ReLU):
                ops.append(("relu", None, None, layer))
            else:
                raise TypeError(f"exact evaluation does not support {type(layer).__name__}")
        self._ops = ops
        self._key = self._parameters_key()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Returns float64 values that are identical on every machine."""
        if self._key != self._parameters_key():
            self._prepare()
        h = quantize_activation_signed(x.detach().cpu())
        for kind, w, b, layer in self._ops:
            if kind == "conv":
                h = F.conv2d(h, w, b, layer.stride, layer.padding)
            elif kind == "deconv":
                h = F.conv_transpose2d(h, w, b, layer.stride, layer.padding, layer.output_padding)
            else:
                h = _to_grid_(h, 0.0, ACT_MAX, ACT_BITS)  # h is this stack's own float64 output
        return h

    def at_half(self, x: torch.Tensor, parity: int, support: int | None = None) -> torch.Tensor:
        """The stack's one stride-1 convolution evaluated only on one half of the checkerboard,
        as ``checkerboard_phases(self(x), parity)``, from an ``x`` that is zero off the half
        ``support`` (None: anywhere). Each output sub-grid is a sum of small convolutions of
        the input's sub-grids, over the taps that can reach a non-zero input: a 5×5 context
        from the other half costs a quarter of the full convolution. The sums are exact, so
        their order does not change a bit."""
        if self._key != self._parameters_key():
            self._prepare()
        ((kind, w, b, layer),) = self._ops
        k = w.shape[-1]
        r = k // 2
        if kind != "conv" or layer.stride != (1, 1) or layer.padding != (r, r) or w.shape[-2] != k:
            raise TypeError("at_half takes one square, stride-1, same-size convolution")
        h = quantize_activation_signed(x.detach().cpu())
        hh, wh = h.shape[-2] // 2, h.shape[-1] // 2
        pad = (r + 1) // 2  # sub-grid samples a tap reaches
        phases = {
            (a, c): F.pad(h[..., a::2, c::2], (pad,) * 4)
            for a in (0, 1)
            for c in (0, 1)
            if support is None or (a + c) % 2 == support
        }
        out = []
        for a, c in ((0, parity), (1, 1 - parity)):
            acc = None
            for (a2, c2), phase in phases.items():
                # taps dr, dc in [-r, r] landing on this sub-grid: (a + dr - a2) even
                dr, dc = -r + (a + r - a2) % 2, -r + (c + r - c2) % 2
                kernel = w[:, :, dr + r :: 2, dc + r :: 2]
                top, left = pad + (a + dr - a2) // 2, pad + (c + dc - c2) // 2
                part = phase[
                    ..., top : top + hh + kernel.shape[-2] - 1, left : left + wh + kernel.shape[-1] - 1
                ]
                y = F.conv2d(part, kernel)
                acc = y if acc is None else acc.add_(y)
            out.append(acc.add_(b[:, None, None]))
        return torch.cat(out)


def checkerboard_phases(x: torch.Tensor, parity: int) -> torch.Tensor:
    """The samples of x whose (row + column) % 2 == ``parity`` as two sub-grids stacked on the
    batch: those on even rows, then those on odd rows. (N, C, H, W) -> (2N, C, H/2, W/2), H and
    W even. A 1×1 layer or a pointwise operation on the half runs on this as it would on x."""
    return torch.cat([x[..., 0::2, parity::2], x[..., 1::2, 1 - parity :: 2]])


def set_phases(x: torch.Tensor, parity: int, phases: torch.Tensor) -> None:
    """Writes ``phases`` (as ``checkerboard_phases`` lays them out) into x's half ``parity``."""
    n = x.shape[0]
    x[..., 0::2, parity::2] = phases[:n]
    x[..., 1::2, 1 - parity :: 2] = phases[n:]


def exact_forward(layers: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """One-off exact evaluation of a layer stack (see ExactStack)."""
    return ExactStack(layers)(x)


def quantize_activation_signed(x: torch.Tensor) -> torch.Tensor:
    """The input of the stack may be negative (latents); snap it to the grid without clamping to 0."""
    return _to_grid_(x.to(torch.float64, copy=True), -ACT_MAX, ACT_MAX, ACT_BITS)
