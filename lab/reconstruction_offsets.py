"""Would decoder-side reconstruction offsets help the shipped decoder? (Tried; they do not.)

    python lab/reconstruction_offsets.py --scales 0.05,0.1,0.25,1 --calibrate 24 --limit 24 --beta 0

The coder sends q = round(y' − μ) and the decoder rebuilds ŷ' = μ + q. Where the Gaussian is
narrow, the y' behind a q ≠ 0 lie mostly on the side of μ (the residual's density falls across
the bin), so the conditional mean E[y' − μ | q] is nearer zero than q: a decoder could rebuild
ŷ' = μ + sign(q) · (|q| − s · δ), with δ(σ bucket, |q|) = E[|q| − |y' − μ| | bucket, |q|]
measured on training images, at no cost in bits (VVC and JPEG AI decoders do likewise). This
script measures δ on ``--calibrate`` training photos (256-px centre crops) at the five rate
levels of the quality ladder, then decodes the first ``--limit`` Kodak images with and without
the offsets (scaled by each of ``--scales``) and prints the mean PSNR change at each level.

It runs the float training path (the context sees the integer-grid anchors, as in the coder),
so q is the coder's up to float rounding, and the bits are the same with and without offsets.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ugicm_codec.codec import _edge_padded
from ugicm_codec.image_io import psnr
from ugicm_codec.weights import load_model, locate

MAX_Q = 3  # |q| ≥ 3 share one bucket (and one mean of |q| − |y' − μ|)


def latent_terms(model, x: torch.Tensor, level: float):
    """(y' − μ, μ, scale-table index) of every element of y' for x (1×3×H×W in [0, 1])."""
    lv = torch.tensor([level])
    u = model.g_a(x).float() * model.rate.gain(lv)
    medians = model.entropy_bottleneck._get_medians().reshape(1, -1, 1, 1)  # ẑ as the coder rounds z
    z_hat = torch.round(model.h_a(u) - medians) + medians
    params = model.h_s(z_hat)
    if model.context is not None:
        params = model.context(u, params)
    index, means = model.split_parameters(params)
    return u - means, means, index


def bucket(index: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    return index * MAX_Q + q.abs().clamp(max=MAX_Q).long() - 1


def padded(im: Image.Image) -> tuple[torch.Tensor, np.ndarray]:
    """(the image edge-padded as the codec codes it, 1×3×H'×W' in [0, 1]; its RGB pixels)."""
    rgb = np.asarray(im.convert("RGB"))
    return torch.from_numpy(_edge_padded(rgb)).permute(2, 0, 1)[None].float() / 255, rgb


def decode(model, means, q, level, beta, shape) -> np.ndarray:
    x_hat = model.synthesis(means + q, level, beta).clamp(0, 1)
    h, w = shape
    return (x_hat[0, :, :h, :w].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--weights", default=None, help="weights file or directory (default: the shipped)")
    parser.add_argument(
        "--train", default="../shared/data/train", help="calibration photos (searched recursively)"
    )
    parser.add_argument("--kodak", default="../shared/data/kodak")
    parser.add_argument("--calibrate", type=int, default=24, help="calibration photos")
    parser.add_argument("--limit", type=int, default=24, help="Kodak images decoded")
    parser.add_argument("--scales", default="0.05,0.1,0.25,1", help="fractions of the measured offsets")
    parser.add_argument("--beta", type=float, default=0.0, help="preference of the decode measured")
    parser.add_argument("--json", type=Path, default=None, help="also write the table here")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = load_model(locate(args.weights))
    levels = [model.max_level * k / 4 for k in range(5)]
    buckets = len(model.gaussian_conditional.scale_table) * MAX_Q
    photos = sorted(p for p in Path(args.train).rglob("*") if p.suffix.lower() in {".jpg", ".png"})
    photos = photos[:: max(1, len(photos) // args.calibrate)][: args.calibrate]
    crops = []
    for path in photos:
        im = Image.open(path).convert("RGB")
        left, top = max(0, (im.width - 256) // 2), max(0, (im.height - 256) // 2)
        crops.append(padded(im.crop((left, top, left + 256, top + 256)))[0])

    offsets = {}
    with torch.no_grad():
        for level in levels:
            total, count = (
                torch.zeros(buckets, dtype=torch.float64),
                torch.zeros(buckets, dtype=torch.float64),
            )
            for x in crops:
                r, _, index = latent_terms(model, x, level)
                q = torch.round(r)
                keep = q != 0
                b = bucket(index[keep], q[keep])
                total.index_add_(0, b, (q[keep].abs() - r[keep].abs()).double())
                count.index_add_(0, b, torch.ones_like(b, dtype=torch.float64))
            # Buckets seen fewer than 50 times keep δ = 0: too few samples to trust a mean.
            offsets[level] = torch.where(count >= 50, total / count.clamp(min=1), 0.0).float()

        scales = [float(s) for s in args.scales.split(",")]
        kodak = sorted(Path(args.kodak).glob("*.png"))[: args.limit]
        change = {s: {level: [] for level in levels} for s in scales}
        for path in kodak:
            x, rgb = padded(Image.open(path))
            for level in levels:
                r, means, index = latent_terms(model, x, level)
                q = torch.round(r)
                base = psnr(rgb, decode(model, means, q, level, args.beta, rgb.shape[:2]))
                delta = offsets[level][bucket(index, q).clamp(min=0)] * (q != 0)
                for s in scales:
                    moved = q - torch.sign(q) * s * delta
                    decoded = decode(model, means, moved, level, args.beta, rgb.shape[:2])
                    change[s][level].append(psnr(rgb, decoded) - base)
            print(f"{path.name} done", flush=True)

    print(
        f"\nmean PSNR change (dB) of the beta={args.beta:g} decode, {len(kodak)} Kodak images, "
        f"offsets from {len(photos)} training crops"
    )
    print("scale  " + "  ".join(f"level {level:5.2f}" for level in levels))
    for s in scales:
        print(f"{s:5.2f}  " + "  ".join(f"{np.mean(change[s][level]):+11.3f}" for level in levels))
    if args.json:
        args.json.write_text(
            json.dumps(
                {str(s): {f"{level:g}": float(np.mean(v)) for level, v in change[s].items()} for s in scales},
                indent=1,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
