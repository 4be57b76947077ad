"""Peak memory and time of encode and decode against image size (tiled coding), plus the seam check.

    python scripts/bench_memory.py --sizes 1,4,16,50 --json /tmp/memory.json
    python scripts/bench_memory.py --sizes "" --images kodim01.png,photo-24mp.png --json /tmp/memory.json

Each measurement runs in a fresh process (peak RSS of that process alone, torch and the model
included): the encode, the human decode and the machine decode (which runs the machine adapters,
with a wider tile margin), at the default quality and precision. Images are synthetic (smooth
colour fields with edges and noise) of the given megapixels at 3:2, and any given ``--images``.
The seam check decodes a Kodak image both ways with synthesis tiles of 20 latent samples (320 px,
at the default precision) and untiled, and reports the PSNRs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from ugicm_codec.shared import shared_path

KODAK = shared_path("data", "kodak")

_CHILD = r"""
import resource, sys, time, numpy as np, torch
from PIL import Image
from ugicm_codec.codec import Codec
mode, path, out, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
codec = Codec(device="cpu", threads=threads)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
if mode == "encode":
    data = codec.encode(Image.open(path))
    open(out, "wb").write(data)
else:
    codec.decode(open(path, "rb").read(), mode).save(out)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(seconds, peak, base)
"""


def synthetic(megapixels: float, path: Path) -> tuple[int, int]:
    import numpy as np
    from PIL import Image

    w = int((megapixels * 1e6 * 1.5) ** 0.5)
    h = int(megapixels * 1e6 / w)
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (max(2, h // 64), max(2, w // 64), 3), dtype=np.uint8)
    im = Image.fromarray(small).resize((w, h), Image.BICUBIC)
    arr = np.asarray(im).astype(np.int16) + rng.integers(-6, 7, (h, w, 1), dtype=np.int16)
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(path)
    return w, h


def run_child(mode: str, src: Path, dst: Path, threads: int) -> tuple[float, float]:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, mode, str(src), str(dst), str(threads)],
        capture_output=True,
        text=True,
        check=True,
    )
    seconds, peak_kb, _ = out.stdout.split()
    return float(seconds), int(peak_kb) / 1024 / 1024  # ru_maxrss is in KiB on Linux


def seam_check() -> dict:
    import numpy as np
    import torch
    from PIL import Image

    from ugicm_codec.codec import Codec

    torch.set_num_threads(2)
    im = Image.open(KODAK / "kodim01.png").convert("RGB")
    ref = np.asarray(im).astype(np.float64)
    tiled = Codec(device="cpu", synthesis_tile=20)  # 320 px: the default tile holds all of kodim01
    whole = Codec(device="cpu", synthesis_tile=10_000)
    data = tiled.encode(im, quality=60)

    def psnr(x):
        return float(10 * np.log10(255**2 / np.mean((x.astype(np.float64) - ref) ** 2)))

    result = {
        "image": "kodim01",
        "crop": "/tmp/ugicm-seam-crop.png (x 576-704 spans the tile boundary at 640)",
    }
    for prefer in ("human", "machine"):
        a, b = np.asarray(tiled.decode(data, prefer)), np.asarray(whole.decode(data, prefer))
        result[prefer] = {
            "psnr_tiled": round(psnr(a), 4),
            "psnr_untiled": round(psnr(b), 4),
            "max_abs_pixel_difference": int(np.abs(a.astype(int) - b).max()),
        }
        if prefer == "human":  # a crop across the boundary between the two synthesis tiles (x = 640)
            Image.fromarray(a[192:320, 576:704]).resize((512, 512), Image.NEAREST).save(
                "/tmp/ugicm-seam-crop.png"
            )
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1,4,16,50", help="megapixels, comma-separated")
    parser.add_argument("--images", default="", help="image files, comma-separated")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ugicm-bench-memory"))
    parser.add_argument("--no-seam-check", action="store_true", help="skip the Kodak seam check")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    print(
        f"{'MP':>6} {'size':>13} {'encode s':>9} {'enc peak GB':>11} {'decode s':>9} {'dec peak GB':>11} "
        f"{'machine s':>9} {'mach peak GB':>12} {'bpp':>7}"
    )
    sources = [float(s) for s in args.sizes.split(",") if s] + [Path(s) for s in args.images.split(",") if s]
    for source in sources:
        if isinstance(source, Path):
            from PIL import Image

            src, (w, h) = source, Image.open(source).size
        else:
            src = args.workdir / f"{source:g}mp.png"
            w, h = synthetic(source, src)
        ugc = args.workdir / f"{src.stem}.ugc"
        out = ugc.with_suffix(".out.png")
        enc_s, enc_gb = run_child("encode", src, ugc, args.threads)
        dec_s, dec_gb = run_child("human", ugc, out, args.threads)
        mach_s, mach_gb = run_child("machine", ugc, out, args.threads)
        bpp = ugc.stat().st_size * 8 / (w * h)
        rows.append(
            {
                "image": src.name if isinstance(source, Path) else "synthetic",
                "megapixels": round(w * h / 1e6, 2),
                "width": w,
                "height": h,
                "encode_seconds": round(enc_s, 2),
                "encode_peak_gb": round(enc_gb, 3),
                "decode_seconds": round(dec_s, 2),
                "decode_peak_gb": round(dec_gb, 3),
                "machine_decode_seconds": round(mach_s, 2),
                "machine_decode_peak_gb": round(mach_gb, 3),
                "bpp": round(bpp, 4),
            }
        )
        r = rows[-1]
        print(
            f"{r['megapixels']:>6} {f'{w}x{h}':>13} {enc_s:>9.1f} {enc_gb:>11.2f} {dec_s:>9.1f} {dec_gb:>11.2f} "
            f"{mach_s:>9.1f} {mach_gb:>12.2f} {bpp:>7.3f}",
            flush=True,
        )
    result = {
        "threads": args.threads,
        "device": "cpu",
        "rows": rows,
        "note": "peak = max RSS of a fresh process, model and torch included",
    }
    if KODAK.exists() and not args.no_seam_check:
        result["seam_check"] = seam_check()
        print("seam check:", json.dumps(result["seam_check"]))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
