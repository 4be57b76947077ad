"""A large test photo from the Kodak set: an n×n grid of Kodak images (portrait ones turned),
each resized to fill its cell, cropped to the size asked for. The large-image rows of
docs/speed.md use 4096x3072 (12.6 MP, a 4×4 grid) and 6000x4000 (24 MP, 6×6).

    python scripts/kodak_mosaic.py 4096x3072 /tmp/kodak-mosaic-4096x3072.png --grid 4
    python scripts/kodak_mosaic.py 6000x4000 /tmp/kodak-mosaic-6000x4000.png --grid 6
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from PIL import Image

from ugicm_codec.shared import shared_path


def mosaic(width: int, height: int, grid: int, kodak: Path) -> Image.Image:
    cell_w, cell_h = width // grid, math.ceil(height / grid)
    out = Image.new("RGB", (cell_w * grid, cell_h * grid))
    for k in range(grid * grid):
        with Image.open(kodak / f"kodim{k % 24 + 1:02d}.png") as im:
            im = im.convert("RGB")
            if im.height > im.width:
                im = im.rotate(90, expand=True)
            out.paste(im.resize((cell_w, cell_h), Image.LANCZOS), ((k % grid) * cell_w, (k // grid) * cell_h))
    return out.crop((0, 0, width, height))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("size", help="WIDTHxHEIGHT")
    parser.add_argument("output", type=Path)
    parser.add_argument("--grid", type=int, default=4, help="images per row and per column")
    parser.add_argument("--kodak", type=Path, default=shared_path("data", "kodak"))
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    mosaic(width, height, args.grid, args.kodak).save(args.output)


if __name__ == "__main__":
    main()
