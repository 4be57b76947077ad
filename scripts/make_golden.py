"""Regenerates formats/golden/: a fixed tiny test model, .ugc files and their expected decodes.

    python scripts/make_golden.py            # tiny-model files (only needed if the format changes)
    python scripts/make_golden.py --default  # also the files of the shipped weights (after retraining)

The tiny model is random but fixed (seeded), with non-zero preference biases so that the human
and machine decodes differ. The tests decode every golden file and compare pixels exactly.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from ugicm_codec.codec import Codec
from ugicm_codec.models import build_model
from ugicm_codec.weights import export

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "formats" / "golden"
TINY = "ugicm-hp-tiny"


def synthetic_image() -> Image.Image:
    """96x80: gradients, edges and a disc, so that every part of the codec has work to do."""
    h, w = 80, 96
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1), (xx + yy) * 255 // (w + h - 2)], -1)
    im = Image.fromarray(rgb.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(im)
    draw.ellipse((20, 15, 60, 55), fill=(200, 40, 30))
    draw.rectangle((62, 10, 90, 70), outline=(10, 10, 10), width=3)
    return im


def tiny_weights(directory: Path) -> None:
    torch.manual_seed(1234)
    model = build_model(TINY)
    with torch.no_grad():
        for bias in model.g_s.biases:
            bias.proj.weight.normal_(0, 0.5)
            bias.proj.bias.normal_(0, 0.1)
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{TINY}.safetensors"
    digest = export(model, directory / name)
    manifest = {
        "default": TINY,
        "models": {
            TINY: {"file": name, "sha256": digest, "note": "fixed random test model for golden files"}
        },
    }
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def write_set(
    codec: Codec,
    prefix: str,
    image: Image.Image,
    quality: float,
    prefers=("human", "machine"),
    out: Path = GOLDEN,
):
    data = codec.encode(image, quality=quality)
    (out / f"{prefix}.ugc").write_bytes(data)
    for prefer in prefers:
        codec.decode(data, prefer).save(out / f"{prefix}.{prefer}.png")
    print(f"{prefix}.ugc: {len(data)} bytes")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--default", action="store_true", help="also regenerate the shipped-weights files")
    parser.add_argument(
        "--out", type=Path, default=GOLDEN, help="where to write them (default: formats/golden)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    source = synthetic_image()
    source.save(out / "source.png")
    if not (out / "tiny" / "manifest.json").exists():
        tiny_weights(out / "tiny")
    # The golden decodes are the reference decode (float32, formats/ugc.md "Decode precision"):
    # the default precision is bf16 on CPUs that have it, and its pixels differ by rounding.
    # The names keep the qualities the files were first made at, when 0-100 spanned the ladder
    # alone; quality 0.8·q now gives the same rate level (the top fifth is the residual layer).
    tiny = Codec(weights=out / "tiny", device="cpu", precision="float32")
    write_set(tiny, "tiny-q30", source, 24, out=out)
    write_set(tiny, "tiny-q90", source, 72, out=out)
    write_set(tiny, "tiny-grey", source.convert("L"), 48, prefers=("human",), out=out)
    write_set(tiny, "tiny-residual", source, 95, out=out)  # a residual layer (formats/ugc.md)
    if args.default:
        write_set(
            Codec(device="cpu", precision="float32"), "default-q60", source, 48, prefers=("human",), out=out
        )


if __name__ == "__main__":
    main()
