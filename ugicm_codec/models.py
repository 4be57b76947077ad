"""The UG-ICM model: a mean-scale hyperprior with gain-based continuous rate control and a
preference-conditioned (PCDM) synthesis transform.

    x ─g_a─► y ─×gain(level)─► y' ─h_a─► z ─Q─► ẑ ─h_s (exact)─► (scales, means) ─GC─► ŷ'
    ŷ' ─×inverse_gain(level)─► ŷ ─g_s(·, PCDM(beta))─► x̂

``forward()`` is the differentiable training path; ``compress()``/``decompress()`` produce and read
real rANS bitstreams with the same entropy model. The entropy side (ẑ, h_s, the CDF tables and the
coder) always runs on the CPU with exact arithmetic, so the bitstream decodes identically wherever
the analysis and synthesis transforms ran.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.layers import GDN
from compressai.models.base import CompressionModel, get_scale_table
from compressai.models.utils import conv, deconv
from compressai.ops import quantize_ste

from .layers import (
    ExactStack,
    PreferenceBias,
    PreferenceEmbedding,
    PreferenceResidual,
    RateGain,
    ThreadInvariantGDN,
)

# CompressAI's MSE lambdas for its quality 1..6 (plus one below and one above), on 0-255 scale.
SCALE_TABLE_LEVELS = 256

DEFAULT_LAMBDAS = (0.0009, 0.0018, 0.0035, 0.0067, 0.013, 0.025, 0.0483, 0.0932)


class PreferenceSynthesis(nn.Module):
    """g_s with a PCDM per block: each block adds a per-channel bias projected from the
    preference embedding to its input, then upsamples (and applies IGDN, except the last).

    With ``residual``, the blocks at 1/16, 1/8 and 1/4 scale also run a ``PreferenceResidual``
    (whose bias comes before a nonlinearity) ahead of upsampling. None at 1/2 scale: a 3×3 block
    there would double the decoder's cost on a CPU.
    """

    def __init__(self, M: int, N: int, embed_dim: int, residual: bool = False):
        super().__init__()
        in_channels = [M, N, N, N]
        out_channels = [N, N, N, 3]
        self.biases = nn.ModuleList(PreferenceBias(embed_dim, c) for c in in_channels)
        self.residuals = nn.ModuleList(
            PreferenceResidual(embed_dim, c) for c in in_channels[:3]
        ) if residual else None
        self.upsamples = nn.ModuleList(deconv(i, o) for i, o in zip(in_channels, out_channels))
        self.igdns = nn.ModuleList(ThreadInvariantGDN(N, inverse=True) for _ in range(3))

    def forward(self, y_hat: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        h = y_hat
        for i, (bias, up) in enumerate(zip(self.biases, self.upsamples)):
            h = bias(h, embedding)
            if self.residuals is not None and i < len(self.residuals):
                h = self.residuals[i](h, embedding)
            h = up(h)
            if i < len(self.igdns):
                h = self.igdns[i](h)
        return h


@dataclass(frozen=True)
class Architecture:
    name: str
    N: int = 128
    M: int = 192
    embed_dim: int = 128
    residual: bool = False  # PreferenceResidual blocks in g_s
    lambdas: tuple[float, ...] = DEFAULT_LAMBDAS

    @property
    def downsampling(self) -> int:
        return 64  # g_a halves four times, h_a twice more

    @property
    def synthesis_reach(self) -> int:
        """How many latent samples away g_s's receptive field reaches (rounded up): each 5×5
        stride-2 deconvolution reaches 1 sample of its input, each residual block's two 3×3
        convolutions 2, both shrinking by half per scale: 1.875 without residual blocks,
        5.375 with them. Synthesis tiles need at least this margin to be seamless."""
        return 6 if self.residual else 2


class UGICM(CompressionModel):
    def __init__(self, arch: Architecture):
        super().__init__()
        N, M = arch.N, arch.M
        self.arch = arch
        self.g_a = nn.Sequential(
            conv(3, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N), conv(N, M)
        )
        self.g_s = PreferenceSynthesis(M, N, arch.embed_dim, arch.residual)
        self.h_a = nn.Sequential(
            conv(M, N, stride=1, kernel_size=3), nn.ReLU(), conv(N, N), nn.ReLU(), conv(N, N)
        )
        # Only Conv/ConvTranspose/ReLU: h_s must be evaluable by layers.exact_forward.
        self.h_s = nn.Sequential(
            deconv(N, M), nn.ReLU(), deconv(M, M), nn.ReLU(), conv(M, 2 * M, stride=1, kernel_size=3)
        )
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.gaussian_conditional = GaussianConditional(None)
        lambdas = torch.tensor(arch.lambdas, dtype=torch.float64)
        # Start each ladder point at the quantizer step that is MSE-optimal at high rate (∝ λ^-1/2).
        mid = lambdas.log().mean().exp()
        self.rate = RateGain(len(arch.lambdas), M, (lambdas / mid).sqrt().tolist())
        self.preference = PreferenceEmbedding(dim=arch.embed_dim)
        self.register_buffer("lambdas", lambdas.float(), persistent=False)
        self.exact_h_s = ExactStack(self.h_s)

    # ----------------------------------------------------------------- rate ladder
    @property
    def max_level(self) -> float:
        return float(len(self.arch.lambdas) - 1)

    def lmbda(self, level: torch.Tensor) -> torch.Tensor:
        """λ for a continuous level, interpolated in log space like the gains."""
        level = level.float().clamp(0, self.max_level)
        low = level.floor().clamp(max=self.max_level - 1).long()
        t = level - low.float()
        log_l = self.lambdas.log()
        return (log_l[low] * (1 - t) + log_l[low + 1] * t).exp()

    def preference_parameter_names(self, residual: bool = True) -> set[str]:
        """Parameters of the PCDM: the embedding, the per-block biases and (with ``residual``)
        the residual blocks that carry them. They start as a no-op, and only through them can
        beta=1 differ from beta=0."""
        kinds = (PreferenceEmbedding, PreferenceBias) + ((PreferenceResidual,) if residual else ())
        return {
            f"{prefix}.{name}" if prefix else name
            for prefix, module in self.named_modules() if isinstance(module, kinds)
            for name, _ in module.named_parameters()
        }

    # ----------------------------------------------------------------- training path
    def forward(self, x: torch.Tensor, level: torch.Tensor, beta: torch.Tensor) -> dict:
        y = self.g_a(x).float()
        # Likelihoods and the entropy model stay in float32 even under bf16 autocast.
        with torch.autocast(device_type=x.device.type, enabled=False):
            y = y * self.rate.gain(level)
            z = self.h_a(y)
            z_hat, z_likelihoods = self.entropy_bottleneck(z)
            scales, means = self.h_s(z_hat).chunk(2, 1)
            _, y_likelihoods = self.gaussian_conditional(y, scales, means)
            # Mixed quantization (Minnen & Singh 2020): noise for the rate term, rounding with a
            # straight-through gradient for what the decoder sees, as at test time.
            y_hat = quantize_ste(y - means) + means
            y_hat = y_hat * self.rate.inverse_gain(level)
        x_hat = self.g_s(y_hat, self.preference(beta))
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}

    # ----------------------------------------------------------------- bitstream path
    def entropy_parameters(self, z_hat: torch.Tensor):
        """(indexes, means) of y' from ẑ, bit-exact on any machine (CPU, float64 fixed point)."""
        params = self.exact_h_s(z_hat)
        scales, means = params.float().chunk(2, 1)
        gc = self.gaussian_conditional
        # CompressAI's build_indexes counts table entries >= σ in a Python loop, one pass per level
        # (0.1 s per Kodak image with 256 levels); a binary search gives the same integers: the
        # number of entries (all but the last) strictly below σ.
        table = gc.scale_table[:-1].to(scales.device, scales.dtype)
        indexes = torch.searchsorted(table, gc.lower_bound_scale(scales).contiguous()).int()
        return indexes, means

    @torch.no_grad()
    def analysis(self, x: torch.Tensor) -> torch.Tensor:
        """y = g_a(x), before the rate gain: runs wherever x lives, once per image whatever the rate."""
        return self.g_a(x).float()

    @torch.no_grad()
    def compress_latent(self, y: torch.Tensor, level: float) -> dict:
        """Codes y at a rate level: {"strings": [y_string, z_string], "y_shape", "z_shape"}."""
        if y.size(0) != 1:
            raise ValueError("compress_latent() takes one image at a time")
        device = self.rate.log_gain.device
        y = y.to(device) * self.rate.gain(torch.tensor([level], device=device))
        z = self.h_a(y).cpu()
        y = y.cpu()
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat = self.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
        indexes, means = self.entropy_parameters(z_hat)
        y_strings = self.gaussian_conditional.compress(y, indexes, means)
        return {
            "strings": [y_strings[0], z_strings[0]],
            "y_shape": tuple(y.shape[-2:]),
            "z_shape": tuple(z.shape[-2:]),
        }

    def compress(self, x: torch.Tensor, level: float) -> dict:
        return self.compress_latent(self.analysis(x), level)

    @torch.no_grad()
    def decompress_latent(self, y_string: bytes, z_string: bytes, z_shape) -> torch.Tensor:
        """Entropy-decodes ŷ' (CPU, exact). Independent of the preference."""
        zh, zw = z_shape
        z_string = guard_stream(z_string, self.arch.N * zh * zw)
        z_hat = self.entropy_bottleneck.decompress([z_string], (zh, zw))
        indexes, means = self.entropy_parameters(z_hat)
        y_string = guard_stream(y_string, indexes.numel())
        return self.gaussian_conditional.decompress([y_string], indexes, means=means)

    @torch.no_grad()
    def synthesis(self, y_hat_gained: torch.Tensor, level: float, beta: float) -> torch.Tensor:
        """x̂ = g_s(ŷ' × inverse_gain, PCDM(beta)) on the device of the transforms."""
        device = next(self.g_s.parameters()).device
        lv = torch.tensor([level], device=device)
        y_hat = y_hat_gained.to(device) * self.rate.inverse_gain(lv)
        embedding = self.preference(torch.tensor([beta], device=device))
        return self.g_s(y_hat, embedding)

    def decompress(self, strings, z_shape, level: float, beta: float) -> torch.Tensor:
        y_hat = self.decompress_latent(strings[0], strings[1], z_shape)
        return self.synthesis(y_hat, level, beta)

    # ----------------------------------------------------------------- devices
    def place(self, device: torch.device | str) -> "UGICM":
        """Moves the transforms to ``device``; the entropy side stays on the CPU (see module doc)."""
        for module in (self.g_a, self.h_a, self.g_s, self.rate, self.preference):
            module.to(device)
        return self

    def update(self, scale_table=None, force=False, update_quantiles=False):
        # 256 scales rather than CompressAI's 64: rounding σ up to the next tabulated scale cost
        # 3-5 % over the likelihood estimate with 64, about 1 % with 256 (3 MB of tables).
        if scale_table is None:
            scale_table = get_scale_table(levels=SCALE_TABLE_LEVELS)
        return super().update(scale_table, force, update_quantiles)


ARCHITECTURES: dict[str, Architecture] = {
    "ugicm-hp-128-192": Architecture("ugicm-hp-128-192", N=128, M=192),
    # The same with residual PCDM blocks in g_s; grows from ugicm-hp-128-192 weights (see
    # training.loop.Trainer.initialise), which it decodes identically until trained.
    "ugicm-hpr-128-192": Architecture("ugicm-hpr-128-192", N=128, M=192, residual=True),
    # Tiny variants for tests and smoke runs.
    "ugicm-hp-tiny": Architecture("ugicm-hp-tiny", N=16, M=24, embed_dim=16),
    "ugicm-hpr-tiny": Architecture("ugicm-hpr-tiny", N=16, M=24, embed_dim=16, residual=True),
}


def build_model(name: str) -> UGICM:
    try:
        return UGICM(ARCHITECTURES[name])
    except KeyError:
        raise KeyError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}") from None


def guard_stream(stream: bytes, symbols: int) -> bytes:
    """Appends zero bytes so CompressAI's rANS decoder can never read past the buffer.

    That decoder has no bounds checks: on a crafted or damaged stream it keeps reading 32-bit
    words for every remaining symbol, and a bypass-coded run can read up to about 16 bytes per
    byte of stream first. Trailing zeros bound every such read (in zeros the decoder's state
    drains and each symbol takes one word) and change nothing for a valid stream, which the
    decoder never reads beyond.
    """
    return stream + bytes(32 * len(stream) + 8 * symbols + 4096)


def bits_per_pixel(likelihoods: dict, num_pixels: int) -> torch.Tensor:
    """Per-sample estimated bpp from a likelihoods dict."""
    total = 0
    for lk in likelihoods.values():
        total = total + torch.log(lk).flatten(1).sum(1)
    return total / (-math.log(2) * num_pixels)
