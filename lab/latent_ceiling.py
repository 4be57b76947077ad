"""How much PSNR the transforms can carry at all: Kodak decoded from the unquantized latent
y = g_a(x) (no rounding, no entropy coding) against the same model's coded decode at its top
rate level. If the unquantized PSNR sits near the target, the latent's width (M) or the
transforms' capacity caps the high-quality end, not the rate ladder.

    python lab/latent_ceiling.py WEIGHTS [--images N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ugicm_codec.models import build_model
from ugicm_codec.weights import training_state


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / ((a.clamp(0, 1) - b) ** 2).mean()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("weights")
    ap.add_argument("--kodak", default="../shared/data/kodak")
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--arch", default="ugicm-hpacg-128-192-r13", help="when the file does not name one")
    args = ap.parse_args()
    torch.set_num_threads(2)
    state = training_state(args.weights)
    model = build_model(state["config"]["arch"] if "config" in state else args.arch)
    model.load_grown_state_dict(state["model"])
    model.eval()
    rows = []
    for path in sorted(Path(args.kodak).glob("*.png"))[: args.images]:
        x = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)[None].float() / 255
        top = torch.tensor([model.max_level])
        zero = torch.zeros(1)
        with torch.no_grad():
            y = model.g_a(x)
            # Gain and inverse gain are learned apart: the decoder expects y·g·g⁻¹, unrounded here.
            y = y * model.rate.gain(top) * model.rate.inverse_gain(top)
            ceiling = model.g_s(y, model.conditioning(zero, top))
            coded = model(x, top, zero)["x_hat"]
        rows.append((psnr(ceiling, x), psnr(coded, x)))
        print(f"{path.name}: unquantized {rows[-1][0]:.2f} dB, top level (rounded) {rows[-1][1]:.2f} dB")
    a = np.array(rows)
    print(f"mean of {len(rows)}: unquantized {a[:, 0].mean():.2f} dB, top level {a[:, 1].mean():.2f} dB")


if __name__ == "__main__":
    main()
