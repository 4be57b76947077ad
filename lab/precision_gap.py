"""The decode-precision table of docs/speed.md: Kodak at the default quality, each file decoded
at float32 (the reference) and at the default precision (``fast``: bf16 where the CPU has it),
human and machine; mean PSNR of each, the largest per-image gap and how many pixels differ.

    python lab/precision_gap.py ../shared/data/kodak
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from ugicm_codec.codec import DEFAULT_QUALITY, Codec
from ugicm_codec.hardware import bf16_is_fast
from ugicm_codec.image_io import psnr


def main(folder: str) -> None:
    reference, fast = Codec(device="cpu", precision="float32"), Codec(device="cpu")
    paths = sorted(Path(folder).glob("*.png"))
    rows = {p: {"f32": [], "fast": [], "differ": 0} for p in ("human", "machine")}
    for path in paths:
        original = np.asarray(Image.open(path).convert("RGB"))
        data = reference.encode(original, quality=DEFAULT_QUALITY)
        for prefer, row in rows.items():
            a, b = (np.asarray(c.decode(data, prefer)) for c in (reference, fast))
            row["f32"].append(psnr(original, a))
            row["fast"].append(psnr(original, b))
            row["differ"] += int(np.any(a != b, axis=-1).sum())
    print(f"fast is {'bf16' if bf16_is_fast('cpu') else 'float32'} on this CPU; quality {DEFAULT_QUALITY:g}")
    print("| decode | float32 dB | fast dB | largest per-image gap dB | pixels that differ (all images) |")
    print("|---|---:|---:|---:|---:|")
    for prefer, row in rows.items():
        gap = max(abs(x - y) for x, y in zip(row["f32"], row["fast"]))
        print(
            f"| {prefer} ({len(paths)} images) | {np.mean(row['f32']):.4f} | {np.mean(row['fast']):.4f} "
            f"| {gap:.4f} | {row['differ']} |"
        )


if __name__ == "__main__":
    main(sys.argv[1])
