"""Encoder-side latent refinement: a slower encoder for the same decoder and the same format.

g_a gives an amortized guess at each image's latent. For one image at one rate, gradient
descent on the rate-distortion cost that training minimised,

    J(y) = R(y) / pixels + λ · 255² · MSE(x, g_s(ŷ, beta=0)),

finds a latent that the unchanged decoder turns into a better picture per bit (Campos et al.
2019, "Content adaptive optimization for neural image compression"; Yang et al. 2020,
"Improving inference for neural image compression"). The refined latent is coded as any other,
so files decode with every ugicm decoder, and nothing in the decode path changes.

Rounding, which has no gradient, is replaced as in Yang et al.'s stochastic Gumbel annealing
(SGA): each sample rounds down or up at random, with probabilities that favour the nearer integer
more and more as the temperature falls, and the decoder sees the soft mix. The hyper-latent z is
refined beside y, as a variable of its own (starting from h_a(y), as Yang et al. do): the file
codes both, so z need not be h_a of the refined y. On 6 validation photos at qualities 10 / 40 /
70 that lowered J (with hard rounding) 1.3 / 0.5 / 0.0 % more than refining y alone did. ẑ uses
rounding with a straight-through gradient, so the entropy parameters are those the coder will use.

Where bf16 is fast (hardware.bf16_is_fast), the synthesis runs under bf16 autocast while
optimising: on a CPU with AVX512-BF16 that makes a 20-step encode take about 0.6 of its float32
time (docs/results.md), and J falls as far (within 0.1 % on 6 validation photos). The entropy side stays in
float32, and so do the costs that decide which latent is kept.

The cost is the human decode's: the machine decode of a refined file was not trained for this
latent, and is not what the optimisation looks at. Each entropy tile is refined on its own
(its rate is its own z and y streams), with the distortion of its own pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .compressai_seam import quantize_ste
from .hardware import bf16_is_fast
from .models import UGICM, bits_per_pixel

# Tuned on Kodak images and crops at q25-q60: for 20 steps, Adam at 1e-2 from τ = 0.5 lowered J
# more (2.7 % and 3.6 % on three 256-px crops) than from τ = 0.2 (1.7, 3.1) or at 2e-2 (0.0,
# 2.1); 40 steps at 5e-3 did better still (3.5, 4.1) at twice the time. Rounding with a
# straight-through gradient instead of SGA diverged at 1e-2. A decaying rate did not help: on 6
# validation photos at q10/40/70 (real files' J over the plain encode's, 20 steps), constant 1e-2
# 0.9516; linear decay from 2e-2 0.9516, from 3e-2 0.9514; cosine from 1e-2 0.9636, 3e-2 0.9536.
# With z refined too, a rate of its own did worse than the same 1e-2 (J 0.9466 at 3e-3, 0.9582
# at 3e-2, against 0.9452; estimates with hard rounding).
DEFAULT_LEARNING_RATE = 1e-2
START_TEMPERATURE = 0.5  # Yang et al.'s τ_max
FINAL_TEMPERATURE = 0.05
TEMPERATURE_DECAY = 4.0  # τ falls as exp(-4 · step / steps), down to FINAL_TEMPERATURE


@dataclass
class Refinement:
    y: torch.Tensor  # the latent to code (before the rate gain), on the CPU
    z: torch.Tensor | None  # the hyper-latent to code, on the CPU; None: h_a of y's, as unrefined
    cost_before: float  # J of g_a's latent, with hard rounding (the estimate the coder meets)
    cost_after: float  # J of the refined latent, likewise; kept only when lower
    steps: int

    @property
    def improved(self) -> bool:
        return self.cost_after < self.cost_before


def soft_round(v: torch.Tensor, temperature: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """SGA: floor(v) + a Gumbel-softmax sample of {0, 1}, with logits -atanh(distance to each)/τ.
    At τ → 0 it is rounding; at τ = 0.5 both neighbours are likely when v is near the middle."""
    low = torch.floor(v)
    r = (v - low).clamp(1e-5, 1 - 1e-5)
    logits = torch.stack([-torch.atanh(r), -torch.atanh(1 - r)], -1) / temperature
    uniform = torch.rand(logits.shape, generator=generator, device=v.device).clamp(1e-10, 1 - 1e-10)
    gumbel = -torch.log(-torch.log(uniform))
    return low + torch.softmax(logits + gumbel, -1)[..., 1]


def _bottleneck(model: UGICM, z: torch.Tensor):
    """(ẑ with a straight-through gradient, its likelihoods), as the coder quantizes z."""
    eb = model.entropy_bottleneck
    channels = z.size(1)
    values = z.permute(1, 0, 2, 3).reshape(channels, 1, -1)
    medians = eb._get_medians()
    values = quantize_ste(values - medians) + medians
    likelihood = eb.likelihood_lower_bound(eb._likelihood(values)[0])
    back = lambda t: t.reshape(channels, z.size(0), *z.shape[2:]).permute(1, 0, 2, 3)  # noqa: E731
    return back(values), back(likelihood)


def rd_cost(
    model: UGICM,
    u: torch.Tensor,
    x: torch.Tensor,
    mask: torch.Tensor,
    level: torch.Tensor,
    temperature: float | None,
    generator=None,
    bf16: bool = False,
    z: torch.Tensor | None = None,
) -> torch.Tensor:
    """J of the gained latent u = y × gain, with hyper-latent ``z`` (None: h_a(u)), for the
    picture x, counting only pixels in ``mask``. ``temperature`` None: hard rounding, the coder's;
    otherwise SGA at that temperature. ``bf16``: the synthesis under bf16 autocast (faster, less
    exact).
    Not ``UGICM.latent_forward``: on a model in eval mode its entropy models round without a
    gradient, and in training mode they add noise instead of rounding ẑ as the coder does."""
    entropy = torch.device("cpu")  # the entropy side lives on the CPU (models.UGICM.place)
    device = x.device
    z_hat, z_likelihoods = _bottleneck(model, (model.h_a(u) if z is None else z).to(entropy))
    params = model.h_s(z_hat)
    u_entropy = u.to(entropy)
    if model.context is not None:
        params = model.context(u_entropy, params)
    scales, means = params.chunk(2, 1)
    if temperature is None:
        u_hat = quantize_ste(u_entropy - means) + means
    else:
        u_hat = soft_round(u_entropy - means, temperature, generator) + means
    gc = model.gaussian_conditional
    y_likelihoods = gc.likelihood_lower_bound(gc._likelihood(u_hat, scales, means))
    pixels = mask.sum()
    bpp = bits_per_pixel({"y": y_likelihoods, "z": z_likelihoods}, 1)[0] / pixels.to(entropy)
    y_hat = u_hat.to(device) * model.rate.inverse_gain(level)
    conditioning = model.conditioning(torch.zeros(1, device=device), level)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        x_hat = model.g_s(y_hat, conditioning).float()
    mse = ((x_hat - x) ** 2 * mask).sum() / (3 * pixels)
    return bpp.to(device) + model.lmbda(level.cpu()).item() * 255**2 * mse  # λ's table stays on the CPU


def refine_latent(
    model: UGICM,
    x: torch.Tensor,
    y: torch.Tensor,
    level: float,
    steps: int,
    mask: torch.Tensor | None = None,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    seed: int = 0,
    bf16: bool | None = None,
) -> Refinement:
    """Refines y = g_a(x) (1×M×h×w, before the rate gain) for coding x (1×3×16h×16w, on the
    transforms' device) at ``level``. ``mask`` (1×1×16h×16w) marks the pixels that count (the
    edge padding does not). The result is g_a's latent unless refinement lowered J.
    ``bf16``: optimise with the synthesis in bf16 (None: where it is fast)."""
    device = x.device
    bf16 = bf16_is_fast(device.type) if bf16 is None else bf16
    mask = torch.ones_like(x[:, :1]) if mask is None else mask.to(device)
    lv = torch.tensor([float(level)], device=device)
    generator = torch.Generator().manual_seed(seed)  # SGA's noise: the same file every run
    with torch.no_grad():
        start = y.to(device) * model.rate.gain(lv)
        u = start.clone().requires_grad_(True)
        z = model.h_a(start).cpu().requires_grad_(True)  # beside the entropy side, on the CPU
    with torch.enable_grad():
        optimizer = torch.optim.Adam([u, z], lr=learning_rate)
        for step in range(steps):
            temperature = max(
                START_TEMPERATURE * math.exp(-TEMPERATURE_DECAY * step / steps), FINAL_TEMPERATURE
            )
            cost = rd_cost(model, u, x, mask, lv, temperature, generator, bf16, z)
            optimizer.zero_grad(set_to_none=True)
            cost.backward()
            optimizer.step()
    with torch.no_grad():
        before = rd_cost(model, start, x, mask, lv, None).item()
        after = rd_cost(model, u, x, mask, lv, None, z=z).item()
        if after < before:
            return Refinement((u / model.rate.gain(lv)).cpu(), z.detach().clone(), before, after, steps)
    return Refinement(y.cpu(), None, before, after, steps)
