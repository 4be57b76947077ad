"""The restore decode's figure in docs/restore.md: one crop of a clean image, its degraded copy,
and the human and restore decodes of one .ugc file made from the degraded copy, side by side.

    python scripts/restore_figure.py ../shared/data/kodak/kodim23.png --degradation noise:25 \\
        --quality 48 --box 300,60,192 --out docs/restore-noise.webp

The degraded copy is made as ``ugicm eval --tasks restore`` makes it (seed 0); the file is coded
and decoded by the library, as ``ugicm encode`` / ``ugicm decode --prefer human|restore`` would.
Prints each panel's PSNR against the clean crop and the file's bpp.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ugicm_codec.degradations import image_rng, parse_degradation
from ugicm_codec.image_io import psnr


def panels(clean: np.ndarray, name: str, spec: str, quality: float, weights=None):
    """[(label, HxWx3 image)] for the clean, degraded, human and restore panels, and the bpp."""
    from ugicm_codec.codec import Codec

    d = parse_degradation(spec)
    degraded = d.apply(clean, image_rng(0, name, d))
    codec = Codec(weights=weights)
    data = codec.encode(degraded, quality=quality)
    bpp = 8 * len(data) / (clean.shape[0] * clean.shape[1])
    human, _ = codec.decode_array(data, prefer="human")
    restored, _ = codec.decode_array(data, prefer="restore")
    return [
        ("clean", clean),
        (d.label, degraded),
        ("human decode", human),
        ("restore decode", restored),
    ], bpp


def compose(parts, box: tuple[int, int, int], clean: np.ndarray) -> Image.Image:
    """The crops of ``parts`` at ``box`` (left, top, side), side by side, each labelled with its
    PSNR against the clean crop."""
    left, top, side = box
    crops = [(label, image[top : top + side, left : left + side]) for label, image in parts]
    reference = clean[top : top + side, left : left + side]
    gap, caption = 4, 16
    sheet = Image.new("RGB", (len(crops) * (side + gap) - gap, side + caption), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (label, crop) in enumerate(crops):
        x = i * (side + gap)
        sheet.paste(Image.fromarray(crop), (x, caption))
        text = label if label == "clean" else f"{label} {psnr(reference, crop):.1f} dB"
        draw.text((x + 2, 2), text, fill="black")
    return sheet


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("image", type=Path)
    parser.add_argument("--degradation", default="noise:25")
    parser.add_argument("--quality", type=float, default=60.0)
    parser.add_argument("--box", default="280,120,200", help="left,top,side of the crop in pixels")
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    with Image.open(args.image) as im:
        clean = np.asarray(im.convert("RGB"))
    box = tuple(int(v) for v in args.box.split(","))
    parts, bpp = panels(clean, args.image.name, args.degradation, args.quality, args.weights)
    compose(parts, box, clean).save(args.out, quality=95)  # lossy formats: near-transparent
    for label, image in parts[1:]:
        print(f"{label}: {psnr(clean, image):.2f} dB (whole image)")
    print(f"{args.out}: {bpp:.4f} bpp")


if __name__ == "__main__":
    main()
