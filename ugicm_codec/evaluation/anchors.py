"""Published rate-distortion figures in CompressAI's results format, to compare against.

Each file is ``{"name": ..., "results": {"bpp": [...], "psnr-rgb": [...], "ms-ssim-rgb": [...]}}``
with one entry per point, averaged over the test set by whoever published it.
"""

from __future__ import annotations

import json
from pathlib import Path

from .metrics import ms_ssim_db


def load_anchors(directory: Path) -> dict[str, dict]:
    """{file stem: {"name", "source", "points": [{"bpp", "psnr", "ms_ssim", "ms_ssim_db"}]}}.
    Files that are not in the expected format are skipped, not fatal: they are context only."""
    anchors = {}
    for path in sorted(Path(directory).glob("*.json")):
        try:
            data = json.loads(path.read_text())
            results = data["results"]
            bpp, psnr = results["bpp"], results["psnr-rgb"]
            msssim = results.get("ms-ssim-rgb") or [None] * len(bpp)
            if not (len(bpp) == len(psnr) == len(msssim)) or not bpp:
                continue
        except (OSError, ValueError, KeyError, TypeError):
            continue
        points = [
            {
                "bpp": float(r),
                "psnr": float(p),
                "ms_ssim": None if m is None else float(m),
                "ms_ssim_db": ms_ssim_db(m),
            }
            for r, p, m in zip(bpp, psnr, msssim)
        ]
        anchors[path.stem] = {
            "name": data.get("name", path.stem),
            "source": str(path),
            "points": sorted(points, key=lambda pt: pt["bpp"]),
        }
    return anchors
