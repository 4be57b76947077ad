"""Prints the README's result rows from `ugicm eval` results.json files, so the README quotes
measured figures and nothing typed by hand.

    python scripts/readme_results.py runs/eval-kodak
    python scripts/readme_results.py runs/eval-imagenet --ablation runs/eval-imagenet-nosem
    python scripts/readme_results.py runs/eval-kodak-r20 --against runs/eval-kodak-c2

Each argument is an `ugicm eval --out` folder or the results.json in it.

A Kodak run gives the rate-distortion rows and the BD-rates of the human decode; a run with
``--tasks`` gives the machine-task table at matched rate (human decode, machine decode, and WebP
read off its own curve at the same bpp), with a column for the ablation model's machine decode
when ``--ablation`` names its results. For classification it also prints the paired view from the
run's records.jsonl: how many images only the machine decode classifies right, how many only the
human one, and the exact two-sided sign-test p-value of that split (McNemar's exact test). On a
few hundred images a top-1 difference of 1–2 points is a split like 6:3, which chance makes often.
For every task metric it prints the paired bootstrap interval of machine − human that `ugicm eval`
wrote (results.json's "paired", evaluation/paired.py), per quality and for the mean over them.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def kodak_rows(results: dict) -> None:
    # A run with --prefer human (or machine) has one decode: the other's columns read "–".
    human, machine = ({p["setting"]: p for p in results["curves"].get(curve, [])}
                      for curve in ("ugicm/human", "ugicm/machine"))
    print("| ugicm quality | bpp | human PSNR (dB) | human MS-SSIM | machine PSNR (dB) | machine MS-SSIM |")
    print("|---|---|---|---|---|---|")

    def cells(p):
        return f"{p['psnr']:.2f} | {p['ms_ssim']:.4f}" if p else "– | –"

    for setting, p in (human or machine).items():
        print(f"| {p['quality']:g} | {p['bpp']:.3f} | {cells(human.get(setting))} | {cells(machine.get(setting))} |")
    print()
    for row in results["bd"]:
        if row["test"] == "ugicm/human" and row["metric"] == "psnr" and row["method"] == "cubic":
            if row["error"]:
                print(f"vs {row['reference']} ({row['reference_kind']}): n/a ({row['error']})")
            else:
                print(f"vs {row['reference']} ({row['reference_kind']}): BD-rate {row['bd_rate_percent']:+.1f} %, "
                      f"BD-PSNR {row['bd_quality_db']:+.2f} dB")


def against_rows(results: dict, other: dict) -> None:
    """BD-rate of each ugicm curve of this run against the same curve of another Kodak run (other
    weights, or the same weights' plain encoder against ``--refine-steps``)."""
    from ugicm_codec.evaluation.bd import bd_quality, bd_rate

    for curve, points in results["curves"].items():
        theirs = other["curves"].get(curve)
        if not curve.startswith("ugicm/") or not theirs:
            continue
        axes = [[[p[key] for p in side] for key in ("bpp", "psnr", "ms_ssim_db")] for side in (theirs, points)]
        (ref_bpp, ref_psnr, ref_ms), (bpp, psnr, ms) = axes
        print(f"{curve} vs the other run's: BD-rate {bd_rate(ref_bpp, ref_psnr, bpp, psnr):+.1f} % "
              f"(BD-PSNR {bd_quality(ref_bpp, ref_psnr, bpp, psnr):+.2f} dB), "
              f"at equal MS-SSIM {bd_rate(ref_bpp, ref_ms, bpp, ms):+.1f} %")


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


def paired_intervals(results: dict) -> None:
    rows = results.get("paired") or []
    if not rows:
        return
    level = rows[0]["level"]
    print(f"\n| task metric | quality | machine − human | {100 * level:g} % interval (paired bootstrap) "
          "| draws where machine ≤ human |")
    print("|---|---|---|---|---|")
    difference = {(r["task"], r["metric"], r["setting"]): r["machine"] - r["human"]
                  for r in results["matched"] if None not in (r["machine"], r["human"])}
    for (task, metric) in dict.fromkeys((r["task"], r["metric"]) for r in rows):
        group = [r for r in rows if (r["task"], r["metric"]) == (task, metric)]
        for r in group:
            if r["low"] is None:
                continue
            d = difference.get((task, metric, r["setting"]))
            if r["setting"] == "mean":
                values = [difference.get((task, metric, g["setting"])) for g in group if g["setting"] != "mean"]
                d = None if None in values else sum(values) / len(values)
            point = "–" if d is None else f"{100 * d:+.1f}"
            print(f"| {task} {metric} | {r['setting'].lstrip('q')} | {point} | "
                  f"{100 * r['low']:+.1f} … {100 * r['high']:+.1f} | {100 * r['not_above']:.1f} % |")


def sign_test(a: int, b: int) -> float:
    """Exact two-sided p-value of a split a:b of discordant pairs under a fair coin."""
    n, k = a + b, min(a, b)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n) if n else 1.0


def paired_classification(records: Path, results: dict | None = None) -> None:
    """With ``results``, only the records of that run's images and ugicm coder count: a records
    file can also hold other weights' or another encoder's (copied in, or from earlier runs)."""
    coder = images = None
    if results and results.get("ugicm"):
        from ugicm_codec.evaluation.runner import ugicm_coder

        u = results["ugicm"]
        coder = ugicm_coder(u["model"], u["weights_sha256"], u.get("refine_steps", 0))
        images = set(results["images"])
    correct = {}
    for line in records.open():
        r = json.loads(line)
        c = r.get("tasks", {}).get("classification")
        if coder and (r.get("coder") != coder or r["image"] not in images):
            continue
        if c and r["curve"] in ("ugicm/human", "ugicm/machine"):
            correct[(r["curve"], r["setting"], r["image"])] = c["top5"][0] == c["label"]
    # Only settings with both decodes: a run of one decode (--prefer machine) has no pairs, and
    # "0 against 0, p = 1" would read as a measured tie.
    both = {}
    for curve, q, image in correct:
        if curve == "ugicm/human" and ("ugicm/machine", q, image) in correct:
            both.setdefault(q, []).append(image)
    if not both:
        return
    print("\n| quality | images only the machine decode classifies right | only the human decode | sign test p |")
    print("|---|---|---|---|")
    for q in sorted(both, key=lambda q: float(q.lstrip("q"))):
        images = both[q]
        m = sum(correct[("ugicm/machine", q, i)] and not correct[("ugicm/human", q, i)] for i in images)
        h = sum(correct[("ugicm/human", q, i)] and not correct[("ugicm/machine", q, i)] for i in images)
        print(f"| {q.lstrip('q')} | {m} | {h} | {sign_test(m, h):.2g} |")


def results_file(path: str) -> Path:
    """The results.json an argument names: the file itself, or the one in an `ugicm eval --out` folder."""
    given = Path(path)
    found = given / "results.json" if given.is_dir() else given
    if not found.is_file():
        raise SystemExit(f"readme_results.py: error: {path}: no results.json there (an `ugicm eval --out` folder?)")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=results_file)
    parser.add_argument("--ablation", type=results_file, help="the same run with the ablation model's weights")
    parser.add_argument("--against", type=results_file,
                        help="another Kodak run: BD-rates of this run's ugicm curves against its")
    args = parser.parse_args()
    results = json.loads(args.results.read_text())
    if results.get("matched"):
        task_rows(results, json.loads(args.ablation.read_text()) if args.ablation else None)
        records = args.results.with_name("records.jsonl")
        if records.exists() and any(r["task"] == "classification" for r in results["matched"]):
            paired_classification(records, results)
        paired_intervals(results)
    else:
        kodak_rows(results)
        if args.against:
            print()
            against_rows(results, json.loads(args.against.read_text()))


if __name__ == "__main__":
    main()
