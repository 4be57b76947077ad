"""Prints the README's result rows from `ugicm eval` results.json files, so the README quotes
measured figures and nothing typed by hand.

    python scripts/readme_results.py runs/eval-kodak/results.json
    python scripts/readme_results.py runs/eval-imagenet/results.json --ablation runs/eval-imagenet-nosem/results.json

A Kodak run gives the rate-distortion rows and the BD-rates of the human decode; a run with
``--tasks`` gives the machine-task table at matched rate (human decode, machine decode, and WebP
read off its own curve at the same bpp), with a column for the ablation model's machine decode
when ``--ablation`` names its results.
"""

from __future__ import annotations

import argparse
import json


def kodak_rows(results: dict) -> None:
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


def task_rows(results: dict, ablation: dict | None) -> None:
    ablated = {(r["task"], r["metric"], r["setting"]): r["machine"] for r in (ablation or {}).get("matched", [])}
    original = results["curves"].get("original", [{}])[0].get("tasks", {})
    header = ["task metric", "quality", "bpp", "human decode", "machine decode", "machine − human"]
    header += ["machine decode, no L_sem"] if ablation else []
    header += ["WebP at same bpp", "original"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for r in sorted(results["matched"], key=lambda r: (r["task"], r["metric"])):  # stable: settings stay in order
        fmt = lambda v: "–" if v is None else f"{100 * v:.1f}"  # noqa: E731
        key = (r["task"], r["metric"], r["setting"])
        cells = [f"{r['task']} {r['metric']}", r["setting"].lstrip("q"), f"{r['bpp']:.3f}", fmt(r["human"]),
                 fmt(r["machine"]),
                 "–" if None in (r["machine"], r["human"]) else f"{100 * (r['machine'] - r['human']):+.1f}"]
        cells += [fmt(ablated.get(key))] if ablation else []
        cells += [fmt(r["baselines"].get("webp")), fmt(original.get(r["task"], {}).get(r["metric"]))]
        print("| " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results")
    parser.add_argument("--ablation", help="results.json of the same run with the ablation model's weights")
    args = parser.parse_args()
    results = json.load(open(args.results))
    if results.get("matched"):
        task_rows(results, json.load(open(args.ablation)) if args.ablation else None)
    else:
        kodak_rows(results)


if __name__ == "__main__":
    main()
