"""Prints the README's Kodak rows from an eval's results.json, so the README quotes measured figures.

    python scripts/readme_results.py runs/eval-kodak/results.json
"""

from __future__ import annotations

import json
import sys


def main(path: str) -> None:
    results = json.load(open(path))
    human = results["curves"]["ugicm/human"]
    machine = {p["setting"]: p for p in results["curves"]["ugicm/machine"]}
    print("| ugicm quality | bpp | human PSNR (dB) | human MS-SSIM | machine PSNR (dB) | machine MS-SSIM |")
    print("|---|---|---|---|---|---|")
    for p in human:
        m = machine[p["setting"]]
        print(f"| {p['quality']:g} | {p['bpp']:.3f} | {p['psnr']:.2f} | {p['ms_ssim']:.4f} | "
              f"{m['psnr']:.2f} | {m['ms_ssim']:.4f} |")
    print()
    for row in results["bd"]:
        if row["test"] == "ugicm/human" and row["metric"] == "psnr" and row["method"] == "cubic":
            if row["error"]:
                print(f"vs {row['reference']} ({row['reference_kind']}): n/a ({row['error']})")
            else:
                print(f"vs {row['reference']} ({row['reference_kind']}): BD-rate {row['bd_rate_percent']:+.1f} %, "
                      f"BD-PSNR {row['bd_quality_db']:+.2f} dB")


if __name__ == "__main__":
    main(sys.argv[1])
