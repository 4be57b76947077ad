"""The UG-ICM model: a mean-scale hyperprior with gain-based continuous rate control and a
preference-conditioned (PCDM) synthesis transform.

    x ─g_a─► y ─×gain(level)─► y' ─h_a─► z ─Q─► ẑ ─h_s (exact)─► (scales, means) ─GC─► ŷ'
    ŷ' ─×inverse_gain(level)─► ŷ ─g_s(·, PCDM(beta[, level]))─► x̂

With ``context``, the Gaussian conditional's parameters are also refined from a checkerboard
context of already decoded latents (``entropy.CheckerboardContext``).

``forward()`` is the differentiable training path; ``compress()``/``decompress()`` produce and read
real rANS bitstreams with the same entropy model. The entropy side (ẑ, h_s, the CDF tables and the
coder) always runs on the CPU with exact arithmetic, so the bitstream decodes identically wherever
the analysis and synthesis transforms ran.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, replace

import torch
import torch.nn as nn

from .compressai_seam import (
    GDN,
    CompressionModel,
    EntropyBottleneck,
    GaussianConditional,
    conv,
    deconv,
    get_scale_table,
    guard_stream,
    quantize_ste,
)
from .entropy import CheckerboardContext
from .layers import (
    ExactStack,
    MachineAdapter,
    PreferenceBias,
    PreferenceEmbedding,
    PreferenceResidual,
    RateGain,
    ThreadInvariantGDN,
)
from .preferences import RESTORE

SCALE_TABLE_LEVELS = 256
# Where the restore decode's parameters live (UGICM.attach_restore): its add-on's keys.
RESTORE_PREFIXES = ("restore_embedding.", "g_s.restorers.")
# The entropy models' likelihood bounds (1e-9) are buffers set from a constructor constant, not
# learned. Stored in float16 (as training states packed for a GPU machine once were), they become
# 0: a likelihood of exactly 0 then gives an infinite rate term and a skipped step (the shipped
# weights' file holds such zeros; docs/training.md). So loading keeps the constructed value,
# whatever a file holds. They only bound forward()'s
# likelihoods: the coded bitstreams never see them.
CONSTANT_BUFFERS = (".likelihood_lower_bound.bound",)
# The entropy coder's CDF tables: derived from the parameters by update(), read only by
# compress()/decompress(). A packed training state leaves them out (scripts/pack_for_device.py:
# 3 MiB of the device tool's 64), and loading it keeps the model's own.
CODING_TABLES = ("._quantized_cdf", "._offset", "._cdf_length")

# CompressAI's MSE lambdas for its quality 1..6 (plus one below and one above), on 0-255 scale.
DEFAULT_LAMBDAS = (0.0009, 0.0018, 0.0035, 0.0067, 0.013, 0.025, 0.0483, 0.0932)
# The same ladder continued two steps down (x1/2 each): its lowest point, 0.0009, gave 0.20 bpp
# on Kodak, short of the 0.1 bpp the codec must reach; bpp scaled as about λ^0.56 there.
WIDE_LAMBDAS = (0.00023, 0.00045) + DEFAULT_LAMBDAS
# The 10-point ladder continued three steps up (x2 each) for the high-quality end: its top,
# 0.0932, gave 36.7 dB on Kodak, short of the 40-41 dB that "visually lossless" asks for.
HIGH_LAMBDAS = WIDE_LAMBDAS + (0.18, 0.36, 0.72)


class PreferenceSynthesis(nn.Module):
    """g_s with a PCDM per block: each block adds a per-channel bias projected from the
    preference embedding to its input, then upsamples (and applies IGDN, except the last).

    With ``residual``, the blocks at 1/16, 1/8 and 1/4 scale also run a ``PreferenceResidual``
    (whose bias comes before a nonlinearity) ahead of upsampling, and with ``adapters`` a
    ``MachineAdapter`` after it. None at 1/2 scale: a 3×3 block there would double the decoder's
    cost on a CPU.
    """

    def __init__(self, M: int, N: int, embed_dim: int, residual: bool = False, adapters: bool = False):
        super().__init__()
        in_channels = [M, N, N, N]
        out_channels = [N, N, N, 3]
        self.biases = nn.ModuleList(PreferenceBias(embed_dim, c) for c in in_channels)
        self.residuals = (
            nn.ModuleList(PreferenceResidual(embed_dim, c) for c in in_channels[:3]) if residual else None
        )
        self.adapters = (
            nn.ModuleList(MachineAdapter(embed_dim, c) for c in in_channels[:3]) if adapters else None
        )
        self.upsamples = nn.ModuleList(deconv(i, o) for i, o in zip(in_channels, out_channels))
        self.igdns = nn.ModuleList(ThreadInvariantGDN(N, inverse=True) for _ in range(3))
        self.in_channels = in_channels
        self.embed_dim = embed_dim
        self.restorers: nn.ModuleList | None = None  # attach_restore()

    def attach_restore(self) -> None:
        """Adds the restore decode's blocks: a ``PreferenceResidual`` ahead of every upsampling,
        fed the restore embedding. Their last convolutions start at zero, so an untrained restore
        decode is the human one; the other decodes never run them."""
        self.restorers = nn.ModuleList(PreferenceResidual(self.embed_dim, c) for c in self.in_channels)

    def forward(
        self,
        y_hat: torch.Tensor,
        embedding: torch.Tensor,
        restore: torch.Tensor | None = None,
        band: int | None = None,
    ) -> torch.Tensor:
        """``restore``: the restore embedding (``UGICM.restore_conditioning``), or None for the
        human and machine decodes, which the restore blocks then leave untouched. ``band``: the
        last two upsamplings run in bands of that many rows of their input (``_tail_in_bands``);
        not with ``restore``, whose last block reaches further."""
        h = y_hat
        tail = len(self.upsamples) - 2
        for i in range(len(self.upsamples)):
            h = self._condition(i, h, embedding, restore)
            if band and restore is None and i == tail:
                return self._tail_in_bands(h, embedding, band)
            h = self._upsample(i, h)
        return h

    def _condition(self, i: int, h, embedding, restore) -> torch.Tensor:
        """Block i before its upsampling: the preference bias, then its residual, adapter and
        restore blocks where it has them."""
        h = self.biases[i](h, embedding)
        if self.residuals is not None and i < len(self.residuals):
            h = self.residuals[i](h, embedding)
        if self.adapters is not None and i < len(self.adapters):
            h = self.adapters[i](h, embedding)
        if restore is not None:
            h = self.restorers[i](h, restore)
        return h

    def _upsample(self, i: int, h: torch.Tensor) -> torch.Tensor:
        h = self.upsamples[i](h)
        return self.igdns[i](h) if i < len(self.igdns) else h

    def _tail_in_bands(self, h: torch.Tensor, embedding: torch.Tensor, band: int) -> torch.Tensor:
        """The last two upsamplings, and the inverse GDN and bias between them, in bands of
        ``band`` rows of h, each read with 2 rows more on either side: the transposed
        convolutions reach 1 row of h and half a row, so every band comes out as it would from
        the whole of h, and the decoder's two largest activations are never held whole (a 24 MP
        decode's synthesis 10-20 % faster on a CPU, its tiles' activations staying in cache)."""
        i, rows, out = len(self.upsamples) - 2, h.shape[-2], []
        for r0 in range(0, rows, band):
            r1 = min(rows, r0 + band)
            a0, a1 = max(0, r0 - 2), min(rows, r1 + 2)
            t = self._upsample(i, h[..., a0:a1, :])
            t = self._upsample(i + 1, self._condition(i + 1, t, embedding, None))
            out.append(t[..., (r0 - a0) * 4 : (r1 - a0) * 4, :])
        return torch.cat(out, -2)


@dataclass(frozen=True)
class Architecture:
    name: str
    N: int = 128
    M: int = 192
    embed_dim: int = 128
    residual: bool = False  # PreferenceResidual blocks in g_s
    # The PCDM sees the rate level, and g_s is fed e(beta, level) - e(0, level), so the human
    # decode depends on nothing trained for the machine one (layers.PreferenceEmbedding.offset).
    anchored: bool = False
    adapters: bool = False  # MachineAdapter blocks in g_s (needs residual and anchored)
    lambdas: tuple[float, ...] = DEFAULT_LAMBDAS
    context: bool = False  # checkerboard spatial context in the entropy model
    context_groups: tuple[int, ...] = ()  # and channel groups coded in turn within each half
    # The rate level that the anchored PCDM sees as 1 (its input is level / level_span). A ladder
    # grown upwards keeps its predecessor's span, so the trained points are conditioned as before
    # and the new ones see fractions above 1. None: the ladder's own top.
    level_span: float | None = None

    def __post_init__(self):
        if self.adapters and not (self.residual and self.anchored):
            raise ValueError("machine adapters need the residual, anchored PCDM")

    @property
    def downsampling(self) -> int:
        return 64  # g_a halves four times, h_a twice more

    def synthesis_reach(self, beta: float | str = 1.0) -> int:
        """How many latent samples away g_s's receptive field reaches (rounded up): each 5×5
        stride-2 deconvolution reaches 1 sample of its input, each residual block's (or machine
        adapter's) two 3×3 convolutions 2, both shrinking by half per scale: 1.875 for the
        plain decoder, 3.5 more with residual blocks, and 3.5 more again with adapters, which
        only a decode with beta > 0 runs. The restore decode skips the adapters and runs a block
        at every scale, 1/2 included: 3.75 more. Synthesis tiles need at least this margin to
        be seamless."""
        if beta == RESTORE:
            return math.ceil(1.875 + 3.5 * self.residual + 3.75)
        reach = 1.875 + 3.5 * self.residual + 3.5 * (self.adapters and beta > 0)
        return math.ceil(reach)


class UGICM(CompressionModel):
    def __init__(self, arch: Architecture):
        super().__init__()
        N, M = arch.N, arch.M
        self.arch = arch
        self.g_a = nn.Sequential(conv(3, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N), conv(N, M))
        self.g_s = PreferenceSynthesis(M, N, arch.embed_dim, arch.residual, arch.adapters)
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
        self.preference = PreferenceEmbedding(dim=arch.embed_dim, rate_aware=arch.anchored)
        self.register_buffer("lambdas", lambdas.float(), persistent=False)
        self.exact_h_s = ExactStack(self.h_s)
        self.context = CheckerboardContext(M, groups=arch.context_groups) if arch.context else None
        self.restore_embedding: PreferenceEmbedding | None = None  # attach_restore()

    def load_state_dict(self, state_dict, strict=True):
        own = self.state_dict()
        state = {
            k: own[k].to(v.device) if k.endswith(CONSTANT_BUFFERS) and k in own else v
            for k, v in state_dict.items()
        }
        state.update({k: v for k, v in own.items() if k.endswith(CODING_TABLES) and k not in state})
        return super().load_state_dict(state, strict=strict)

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

    # ----------------------------------------------------------------- restore decode
    def attach_restore(self) -> "UGICM":
        """Adds the restore decode (``--prefer restore``): an embedding of the rate level and a
        block per synthesis scale (``PreferenceSynthesis.attach_restore``). Its weights are a
        separate add-on (``restore_state``): the transforms, the entropy model and the human and
        machine decodes are untouched, so every existing file decodes to the same pixels."""
        if self.restore_embedding is None:
            self.restore_embedding = PreferenceEmbedding(dim=self.arch.embed_dim, rate_aware=True)
            self.g_s.attach_restore()
            device = next(self.g_s.parameters()).device
            self.restore_embedding.to(device)
            self.g_s.restorers.to(device)
        return self

    @property
    def has_restore(self) -> bool:
        return self.restore_embedding is not None

    def restore_parameter_names(self) -> set[str]:
        return {n for n, _ in self.named_parameters() if n.startswith(RESTORE_PREFIXES)}

    def restore_state(self) -> dict:
        """The restore decode's weights alone (what its add-on file holds)."""
        return {k: v for k, v in self.state_dict().items() if k.startswith(RESTORE_PREFIXES)}

    def load_restore_state(self, state: dict) -> None:
        """Attaches the restore decode and loads its weights; ValueError if they do not fit."""
        self.attach_restore()
        own = self.restore_state()
        if set(state) != set(own):
            raise ValueError(
                f"{len(set(own) - set(state))} missing and {len(set(state) - set(own))} unexpected"
            )
        for k, v in state.items():
            if v.shape != own[k].shape:
                raise ValueError(f"{k} has shape {tuple(v.shape)}, not {tuple(own[k].shape)}")
            own[k].copy_(v.to(own[k].dtype))

    def restore_conditioning(self, level: torch.Tensor) -> torch.Tensor:
        """The restore blocks' embedding: a function of the rate level alone."""
        span = self.arch.level_span or self.max_level
        ones = torch.ones(level.reshape(-1).shape, device=level.device)
        return self.restore_embedding(ones, level.float() / span)

    def decoder_conditioning(self, beta: float | str, level: torch.Tensor):
        """(the PCDM's embedding, the restore embedding or None) for a decode preference: the
        restore decode is the human one's conditioning plus the restore blocks."""
        if beta == RESTORE:
            if not self.has_restore:
                raise ValueError("this model has no restore decode")
            human = torch.zeros(level.reshape(-1).shape, device=level.device)
            return self.conditioning(human, level), self.restore_conditioning(level)
        return self.conditioning(torch.tensor([float(beta)], device=level.device), level), None

    def preference_parameter_names(self, residual: bool = True) -> set[str]:
        """Parameters of the PCDM: the embedding, the per-block biases, the machine adapters
        and (with ``residual``) the residual blocks that carry biases. They start as a no-op,
        and only through them can beta=1 differ from beta=0."""
        kinds = (PreferenceEmbedding, PreferenceBias, MachineAdapter)
        kinds += (PreferenceResidual,) if residual else ()
        return {
            f"{prefix}.{name}" if prefix else name
            for prefix, module in self.named_modules()
            if isinstance(module, kinds) and not prefix.startswith(RESTORE_PREFIXES)
            for name, _ in module.named_parameters()
        }

    def growable_parameter_names(self) -> set[str]:
        """Parameters that weights of a smaller architecture may lack, since they start as a
        no-op: the PCDM's and the checkerboard context's (whose refinement starts at zero)."""
        names = self.preference_parameter_names()
        if self.context is not None:
            names |= {f"context.{n}" for n, _ in self.context.named_parameters()}
        return names

    def machine_only_parameter_names(self) -> set[str]:
        """Parameters that cannot change the beta=0 decode: with an anchored PCDM, the embedding,
        the bias projections' weights (they multiply e(beta) - e(0)) and the machine adapters.
        Empty otherwise, where every PCDM parameter moves both decodes."""
        if not self.arch.anchored:
            return set()
        return {n for n in self.preference_parameter_names(residual=False) if not n.endswith(".proj.bias")}

    def conditioning(self, beta: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        """What the PCDM feeds g_s: e(beta), or e(beta, level) - e(0, level) when anchored."""
        if not self.arch.anchored:
            return self.preference(beta)
        span = self.arch.level_span or self.max_level
        return self.preference.offset(beta, level.float() / span)

    def grown_state_dict(self, state: dict) -> dict:
        """Maps weights of a smaller architecture onto this one, decoding as they did.

        Modules this model adds start as a no-op and are simply missing. Growing into an
        anchored PCDM also widens the embedding's input with zero weights for the rate level,
        and, since the biases now see e(beta) - e(0) instead of e(beta), folds each projection
        of e(0) into its bias: W e(beta) + b = W (e(beta) - e(0)) + (b + W e(0)).
        """
        state = self._extend_rate_ladder(dict(state))
        key = "preference.mlp.0.weight"
        if (
            not self.arch.anchored
            or key not in state
            or state[key].shape == self.preference.mlp[0].weight.shape
        ):
            return state
        source = PreferenceEmbedding(dim=self.arch.embed_dim).double()
        source.load_state_dict(
            {
                k.removeprefix("preference."): v.double()
                for k, v in state.items()
                if k.startswith("preference.")
            }
        )
        with torch.no_grad():
            e0 = source(torch.zeros(1, dtype=torch.float64))[0]
        for name in list(state):
            if name.endswith(".proj.bias") and name.startswith("g_s."):
                weight = state[name.removesuffix("bias") + "weight"].double()
                state[name] = (state[name].double() + weight @ e0.to(weight.device)).to(state[name].dtype)
        widened = torch.zeros_like(self.preference.mlp[0].weight)
        widened[:, : state[key].shape[1]] = state[key]
        state[key] = widened
        return state

    def load_grown_state_dict(self, state: dict) -> int:
        """Loads weights of this architecture or of a smaller one it grows from (see
        ``grown_state_dict``) and returns how many tensors start as a no-op. Only modules that
        start as a no-op may be missing (``growable_parameter_names``); anything else missing, or
        any weight left over, is a mismatch (ValueError)."""
        weights = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
        keys = self.load_state_dict(self.grown_state_dict(weights), strict=False)
        missing = set(keys.missing_keys) - self.growable_parameter_names()
        if keys.unexpected_keys or missing:
            raise ValueError(f"{len(keys.unexpected_keys)} unexpected and {len(missing)} missing weights")
        return len(keys.missing_keys)

    def _extend_rate_ladder(self, state: dict) -> dict:
        """Weights of a ladder that this one continues, downwards (ugicm-*-r10 from the 8-point
        ladder) or upwards (ugicm-*-r13 from the 10-point one): the trained points keep their
        gains, and each new point starts where the initial rule puts it relative to the nearest
        trained one, gain ∝ λ^1/2."""
        old = state.get("rate.log_gain")
        if old is None or old.shape[0] == self.rate.levels:
            return state
        lambdas, count = self.arch.lambdas, old.shape[0]
        # The old ladder must be a shipped one (matched by its length) and sit in this one as a
        # contiguous run of its points.
        known = next((k for k in (DEFAULT_LAMBDAS, WIDE_LAMBDAS) if len(k) == count), None)
        starts = [i for i in range(len(lambdas) - count + 1) if lambdas[i : i + count] == known]
        if not starts:
            raise ValueError(
                f"weights with {count} rate points do not fit {self.arch.name}: "
                f"a rate ladder can only grow by new points beyond its ends"
            )
        first = starts[0]
        last = first + count - 1
        below = [math.log(lam / lambdas[first]) for lam in lambdas[:first]]
        above = [math.log(lam / lambdas[last]) for lam in lambdas[last + 1 :]]
        for name, sign in (("rate.log_gain", 1.0), ("rate.log_inverse_gain", -1.0)):
            table = state[name].float()
            parts = [table]
            if below:
                parts.insert(0, table[:1] + sign * 0.5 * torch.tensor(below)[:, None])
            if above:
                parts.append(table[-1:] + sign * 0.5 * torch.tensor(above)[:, None])
            state[name] = torch.cat(parts).to(state[name].dtype)
        return state

    # ----------------------------------------------------------------- training path
    def forward(self, x: torch.Tensor, level: torch.Tensor, beta: torch.Tensor) -> dict:
        y = self.g_a(x).float()
        # Likelihoods and the entropy model stay in float32 even under bf16 autocast.
        with torch.autocast(device_type=x.device.type, enabled=False):
            y_hat, likelihoods = self.latent_forward(y, level)
            y_hat = y_hat * self.rate.inverse_gain(level)
        x_hat = self.g_s(y_hat, self.conditioning(beta, level))
        return {"x_hat": x_hat, "likelihoods": likelihoods}

    def latent_forward(self, y: torch.Tensor, level: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """(ŷ', likelihoods of y' and z) from y = g_a(x): the entropy model's part of forward()."""
        y = y * self.rate.gain(level)
        z = self.h_a(y)
        z_hat, z_likelihoods = self.entropy_bottleneck(z)
        params = self.h_s(z_hat)
        if self.context is not None:
            params = self.context(y, params)
        scales, means = params.chunk(2, 1)
        _, y_likelihoods = self.gaussian_conditional(y, scales, means)
        # Mixed quantization (Minnen & Singh 2020): noise for the rate term, rounding with a
        # straight-through gradient for what the decoder sees, as at test time.
        y_hat = quantize_ste(y - means) + means
        return y_hat, {"y": y_likelihoods, "z": z_likelihoods}

    # ----------------------------------------------------------------- bitstream path
    def entropy_parameters(self, z_hat: torch.Tensor):
        """(indexes, means) of y' from ẑ, bit-exact on any machine (CPU, float64 fixed point)."""
        return self.split_parameters(self.exact_h_s(z_hat))

    def split_parameters(self, params: torch.Tensor):
        """(indexes, means) from exact entropy parameters (σ ‖ μ, float64)."""
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
    def compress_latent(self, y: torch.Tensor, level: float, z: torch.Tensor | None = None) -> dict:
        """Codes y at a rate level: {"strings": [y_string, z_string], "y_shape", "z_shape"}.
        ``z``: the hyper-latent to code (a refined one, refinement.py); None: h_a(y × gain)."""
        if y.size(0) != 1:
            raise ValueError("compress_latent() takes one image at a time")
        device = self.rate.log_gain.device
        y = y.to(device) * self.rate.gain(torch.tensor([level], device=device))
        z = (self.h_a(y) if z is None else z).cpu()
        y = y.cpu()
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat = self.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
        if self.context is not None:
            y_string = self.context.compress(
                y, self.exact_h_s(z_hat), self.split_parameters, self.gaussian_conditional
            )
        else:
            indexes, means = self.entropy_parameters(z_hat)
            y_string = self.gaussian_conditional.compress(y, indexes, means)[0]
        return {
            "strings": [y_string, z_strings[0]],
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
        y_string = guard_stream(y_string, self.arch.M * 16 * zh * zw)
        if self.context is not None:
            return self.context.decompress(
                y_string, self.exact_h_s(z_hat), self.split_parameters, self.gaussian_conditional
            )
        indexes, means = self.entropy_parameters(z_hat)
        return self.gaussian_conditional.decompress([y_string], indexes, means=means)

    @torch.no_grad()
    def synthesis(self, y_hat_gained: torch.Tensor, level: float, beta: float | str) -> torch.Tensor:
        """x̂ = g_s(ŷ' × inverse_gain, PCDM(beta)) on the device of the transforms; ``beta`` may
        also be ``"restore"`` (``decoder_conditioning``)."""
        device = next(self.g_s.parameters()).device
        lv = torch.tensor([level], device=device)
        y_hat = y_hat_gained.to(device) * self.rate.inverse_gain(lv)
        embedding, restore = self.decoder_conditioning(beta, lv)
        return self.g_s(y_hat, embedding, restore)

    def decompress(self, strings, z_shape, level: float, beta: float | str) -> torch.Tensor:
        y_hat = self.decompress_latent(strings[0], strings[1], z_shape)
        return self.synthesis(y_hat, level, beta)

    # ----------------------------------------------------------------- devices
    def place(self, device: torch.device | str) -> "UGICM":
        """Moves the transforms to ``device``; the entropy side stays on the CPU (see module doc)."""
        for module in (self.g_a, self.h_a, self.g_s, self.rate, self.preference, self.restore_embedding):
            if module is not None:
                module.to(device)
        return self

    def update(self, scale_table=None, force=False, update_quantiles=False):
        # 256 scales rather than CompressAI's 64: rounding σ up to the next tabulated scale cost
        # 3-5 % over the likelihood estimate with 64, about 1 % with 256 (3 MB of tables).
        if scale_table is None:
            scale_table = get_scale_table(levels=SCALE_TABLE_LEVELS)
        return super().update(scale_table, force, update_quantiles)


def _lineage(*steps: tuple[str, str | None, dict]) -> dict[str, Architecture]:
    """Architectures as a family tree: each (name, parent, changes) is its parent with those
    fields changed, the way its weights grow from the parent's (training.loop.Trainer.initialise)."""
    out: dict[str, Architecture] = {}
    for name, parent, changes in steps:
        out[name] = replace(out[parent], name=name, **changes) if parent else Architecture(name, **changes)
    return out


_ANCHORED = dict(residual=True, anchored=True, adapters=True)
_GROUPS, _TINY_GROUPS = (16, 16, 32, 64, 64), (4, 4, 8, 8)

ARCHITECTURES: dict[str, Architecture] = _lineage(
    ("ugicm-hp-128-192", None, dict(N=128, M=192)),
    # residual PCDM blocks in g_s; decodes the parent's weights identically until trained
    ("ugicm-hpr-128-192", "ugicm-hp-128-192", dict(residual=True)),
    # an anchored, rate-aware PCDM and machine adapters: the human decode depends on nothing the
    # machine sessions train; grows from either of the above
    ("ugicm-hpa-128-192", "ugicm-hp-128-192", _ANCHORED),
    # the rate ladder continued down to 0.1 bpp (WIDE_LAMBDAS, 10 points)
    ("ugicm-hp-128-192-r10", "ugicm-hp-128-192", dict(lambdas=WIDE_LAMBDAS)),
    ("ugicm-hpa-128-192-r10", "ugicm-hpa-128-192", dict(lambdas=WIDE_LAMBDAS)),
    # a checkerboard context in the entropy model, coding alike until trained (entropy.CheckerboardContext)
    ("ugicm-hpac-128-192-r10", "ugicm-hpa-128-192-r10", dict(context=True)),
    # the context coded in ELIC's uneven channel groups, coding alike until trained
    ("ugicm-hpacg-128-192-r10", "ugicm-hpac-128-192-r10", dict(context_groups=_GROUPS)),
    # the ladder continued three points up (HIGH_LAMBDAS, 13 points, λ up to 0.72), the trained
    # points and their conditioning unchanged
    ("ugicm-hpacg-128-192-r13", "ugicm-hpacg-128-192-r10", dict(lambdas=HIGH_LAMBDAS, level_span=9.0)),
    # tiny variants for tests and smoke runs
    ("ugicm-hp-tiny", None, dict(N=16, M=24, embed_dim=16)),
    ("ugicm-hpr-tiny", "ugicm-hp-tiny", dict(residual=True)),
    ("ugicm-hpa-tiny", "ugicm-hp-tiny", _ANCHORED),
    ("ugicm-hpa-tiny-r10", "ugicm-hpa-tiny", dict(lambdas=WIDE_LAMBDAS)),
    ("ugicm-hpac-tiny-r10", "ugicm-hpa-tiny-r10", dict(context=True)),
    ("ugicm-hpacg-tiny-r10", "ugicm-hpac-tiny-r10", dict(context_groups=_TINY_GROUPS)),
    ("ugicm-hpacg-tiny-r13", "ugicm-hpacg-tiny-r10", dict(lambdas=HIGH_LAMBDAS, level_span=9.0)),
)


def build_model(name: str, initialise: bool = True) -> UGICM:
    """The architecture ``name``, its parameters initialised for training; with ``initialise``
    False they are left as allocated, for a caller that sets every one of them from a state dict
    (a strict ``load_state_dict``): drawing 6.5 M random numbers first cost a decode's start-up
    a third of its model load."""
    if name not in ARCHITECTURES:
        raise KeyError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}")
    with contextlib.nullcontext() if initialise else _initialisers_skipped():
        return UGICM(ARCHITECTURES[name])


@contextlib.contextmanager
def _initialisers_skipped():
    """torch.nn.init's filling functions made no-ops while modules are built. Buffers (the coder
    tables, the likelihood bounds) are made by their constructors, not by these, and stay set."""
    names = (
        "uniform_",
        "normal_",
        "trunc_normal_",
        "constant_",
        "ones_",
        "zeros_",
        "xavier_uniform_",
        "xavier_normal_",
        "kaiming_uniform_",
        "kaiming_normal_",
        "orthogonal_",
    )
    saved = {n: getattr(nn.init, n) for n in names}
    try:
        for n in names:
            setattr(nn.init, n, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for n, f in saved.items():
            setattr(nn.init, n, f)


def bits_per_pixel(likelihoods: dict, num_pixels: int) -> torch.Tensor:
    """Per-sample estimated bpp from a likelihoods dict."""
    total = 0
    for lk in likelihoods.values():
        total = total + torch.log(lk).flatten(1).sum(1)
    return total / (-math.log(2) * num_pixels)
