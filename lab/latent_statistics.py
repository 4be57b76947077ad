"""How much a context model could still find in a trained codec's latents.

    python lab/latent_statistics.py ~/.cache/ugicm/runs/gpu2/s2m.pt ~/.cache/ugicm/runs/ctx/latents.pt

For crops of cached latents y = g_a(x) (ugicm train-context writes them), at the lowest,
middle and highest rate level, the hyperprior's normalised residuals n = (y' − μ) / σ are
compared with their right-hand and lower neighbours and across channels at one position.
Correlated residuals are what a checkerboard or channel context can predict (means); correlated
magnitudes |n|, what it can predict of the scales.
"""

from __future__ import annotations

import argparse

import torch

from ugicm_codec.models import build_model
from ugicm_codec.weights import training_state


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten() - a.mean(), b.flatten() - b.mean()
    return float((a * b).mean() / (a.std() * b.std()))


def mean_cross_channel(n: torch.Tensor) -> float:
    """Mean |correlation| between distinct channels at the same position."""
    c = torch.corrcoef(n.transpose(0, 1).flatten(1))
    off = c - torch.diag(torch.diag(c))
    return float(off.abs().nan_to_num().sum() / (c.numel() - c.size(0)))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", help="checkpoint or shipped weights of the codec")
    parser.add_argument("latents", help="cached latents (N×M×H×W)")
    parser.add_argument("--crops", type=int, default=64)
    args = parser.parse_args()
    state = training_state(args.checkpoint)
    model = build_model(state["config"]["arch"])
    model.load_state_dict({k: (v.float() if v.is_floating_point() else v) for k, v in state["model"].items()})
    model.eval()
    y = torch.load(args.latents, weights_only=True)[: args.crops].float()
    print("level  σ>0.5   n:right  n:down  n:channels  |n|:right  |n|:down  |n|:channels")
    with torch.no_grad():
        for level in (0.0, model.max_level / 2, model.max_level):
            gained = y * model.rate.gain(torch.tensor([level]))
            z_hat, _ = model.entropy_bottleneck(model.h_a(gained))
            scales, means = model.h_s(z_hat).chunk(2, 1)
            scales = model.gaussian_conditional.lower_bound_scale(scales)
            n = (gained - means) / scales
            cells = [(n[..., :, 1:], n[..., :, :-1]), (n[..., 1:, :], n[..., :-1, :])]
            signed = [correlation(a, b) for a, b in cells]
            magnitude = [correlation(a.abs(), b.abs()) for a, b in cells]
            print(
                f"{level:5.2f}  {float((scales > 0.5).float().mean()):5.3f}   {signed[0]:+.3f}   "
                f"{signed[1]:+.3f}   {mean_cross_channel(n):.3f}       {magnitude[0]:+.3f}     "
                f"{magnitude[1]:+.3f}    {mean_cross_channel(n.abs()):.3f}"
            )


if __name__ == "__main__":
    main()
