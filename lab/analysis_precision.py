"""What the fast encode costs: Kodak encoded with the analysis at float32 (the reference encode)
and at the default precision (``fast``: bf16 where the CPU has it), both files decoded at float32;
total bytes and mean PSNR per quality, and the differences.

    python lab/analysis_precision.py ../shared/data/kodak --qualities 10,30,50,70
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from ugicm_codec.codec import Codec
from ugicm_codec.hardware import bf16_is_fast
from ugicm_codec.image_io import psnr


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", type=Path)
    parser.add_argument("--qualities", default="10,30,50,70")
    args = parser.parse_args()
    qualities = [float(q) for q in args.qualities.split(",")]
    reference, fast = Codec(device="cpu", precision="float32"), Codec(device="cpu")
    paths = sorted(args.folder.glob("*.png"))
    totals = {(name, q): [0, []] for name in ("float32", "fast") for q in qualities}
    for path in paths:
        original = np.asarray(Image.open(path).convert("RGB"))
        for q in qualities:
            for name, codec in (("float32", reference), ("fast", fast)):
                data = codec.encode(original, quality=q)
                totals[name, q][0] += len(data)
                totals[name, q][1].append(psnr(original, reference.decode_array(data)[0]))
    print(f"fast is {'bf16' if bf16_is_fast('cpu') else 'float32'} on this CPU; {len(paths)} images")
    print("| quality | float32 bytes | fast bytes | bytes | float32 dB | fast dB | PSNR |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for q in qualities:
        (b32, p32), (bf, pf) = totals["float32", q], totals["fast", q]
        print(
            f"| {q:g} | {b32} | {bf} | {100 * (bf / b32 - 1):+.2f} % | {np.mean(p32):.4f} | "
            f"{np.mean(pf):.4f} | {np.mean(pf) - np.mean(p32):+.4f} dB |"
        )


if __name__ == "__main__":
    main()
