"""Relabels the ugicm records of `ugicm eval` runs made when quality 0-100 spanned the rate
ladder alone: since the residual layer took the scale's top fifth, quality 0.8·q codes the same
rate level, so the same files. Only the labels change (quality, setting, the run's quality
list); every measured figure stays as measured.

    python lab/relabel_qualities.py runs/eval-restore-kodak runs/eval-restore-val ...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SCALE = 0.8


def label(q: float) -> str:
    return f"q{q:g}"


def relabel(run: Path) -> None:
    results = json.loads((run / "results.json").read_text())
    if results["ugicm"].get("quality_scale") == "residual":
        print(f"{run}: already relabelled")
        return
    lines = []
    for line in (run / "records.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r["curve"].startswith("ugicm") and r.get("quality") is not None:
            r["quality"] = round(r["quality"] * SCALE, 6)
            r["setting"] = label(r["quality"])
        lines.append(json.dumps(r))
    (run / "records.jsonl").write_text("\n".join(lines) + "\n")
    results["ugicm"]["qualities"] = [round(q * SCALE, 6) for q in results["ugicm"]["qualities"]]
    for entry in results.get("degradations", {}).values():  # the averaged curves of a restore run
        for curve, points in entry["curves"].items():
            for point in points if curve.startswith("ugicm") else ():
                point["quality"] = round(point["quality"] * SCALE, 6)
                point["setting"] = label(point["quality"])
    results["ugicm"]["quality_scale"] = "residual"
    (run / "results.json").write_text(json.dumps(results, indent=2))
    print(f"{run}: relabelled")


if __name__ == "__main__":
    for name in sys.argv[1:]:
        relabel(Path(name))
