"""``ugicm eval compare``: how sure is a difference between two weights' decodes? A paired bootstrap
across two `ugicm eval` runs on the same images, for instance the machine decode of candidate
weights against the shipped weights':

    ugicm eval compare runs/eval-imagenet-c2 ugicm/machine runs/eval-imagenet-h ugicm/machine

For every task metric both runs scored, at every setting where both have every image, it prints
B − A in points with its 95 % interval and the share of draws where B is not ahead, and the same
for the mean over the settings. The draws are `ugicm eval`'s own (evaluation/paired.py), over the
images, with both decodes scored on the same images in each draw. `ugicm eval` pairs the two
decodes of one run; this pairs a decode of one run with a decode of another, which is what says
whether new weights read better or worse than the old ones.
"""

from __future__ import annotations

import json
from pathlib import Path

from . import records as records_io
from . import tasks as task_registry
from .paired import draw_weights, paired_differences
from .report import ReportError, results_file
from .runner import ugicm_coder


def _outcomes(run_dir: Path, curve: str) -> tuple[dict, dict]:
    """(results.json, {(image, setting): record}) of one run, for the records of ``curve`` made
    by that run's weights (a run directory may hold records of several)."""
    path = results_file(run_dir)
    run_dir = path.parent
    results = json.loads(path.read_text())
    ugicm = results.get("ugicm") or {}
    coder = None
    if curve.startswith("ugicm/"):
        coder = ugicm_coder(ugicm["model"], ugicm["weights_sha256"], ugicm.get("refine_steps", 0))
    chosen = {}
    for record in records_io.load(run_dir).values():
        if record["curve"] == curve and (coder is None or record["coder"] == coder):
            chosen[(record["image"], record["setting"])] = record
    return results, chosen


def compare(
    dir_a: Path, curve_a: str, dir_b: Path, curve_b: str, models_dir: Path | None = None
) -> list[dict]:
    """Rows of B − A per task metric and setting (and their mean), with the paired bootstrap interval.
    ``models_dir``: the downstream models (default: the shared folder's)."""
    models_dir = models_dir or task_registry.MODELS_DIR
    results_a, a = _outcomes(dir_a, curve_a)
    results_b, b = _outcomes(dir_b, curve_b)
    images = results_a["images"]
    if images != results_b["images"]:
        raise ReportError("the two runs were made on different images")
    folder = Path(results_a["folder"])
    weights = draw_weights(len(images))
    settings_seen = sorted({s for _, s in a} & {s for _, s in b}, key=lambda s: float(s[1:]))  # "q40"
    rows = []
    for name in (t for t in results_a["tasks"] if t in results_b["tasks"]):
        task = task_registry.make(name, models_dir)
        task.prepare([folder / im for im in images])
        settings, points = {}, {}
        for setting in settings_seen:
            pair = [[side.get((im, setting)) for im in images] for side in (a, b)]
            if not all(r is not None and name in r.get("tasks", {}) for side in pair for r in side):
                continue
            if any(ra["image_sha256"] != rb["image_sha256"] for ra, rb in zip(*pair)):
                raise ReportError(f"{setting}: the two runs read different image files")
            settings[setting] = tuple([r["tasks"][name] for r in side] for side in pair)
            points[setting] = tuple(task.summarise(side) for side in settings[setting])
        task_rows = paired_differences(task, settings, weights)
        for row in task_rows:
            if row["setting"] in points:
                first, second = points[row["setting"]]
                row["difference"] = second[row["metric"]] - first[row["metric"]]
        for row in task_rows:
            if row["setting"] == "mean":
                each = [
                    r["difference"] for r in task_rows if r["metric"] == row["metric"] and "difference" in r
                ]
                row["difference"] = sum(each) / len(each)
        rows += sorted(task_rows, key=lambda r: r["metric"])  # stable: the settings stay in order
    return rows


def table(rows: list[dict], title: str) -> list[str]:
    """The rows of ``compare`` as a Markdown table under a one-line title."""
    lines = [
        title,
        "",
        "| task metric | setting | B − A | 95 % interval (paired bootstrap) | draws where B ≤ A |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        difference = r.get("difference")
        points = "" if difference is None else f"{100 * difference:+.1f}"
        interval = "–" if r["low"] is None else f"{100 * r['low']:+.1f} … {100 * r['high']:+.1f}"
        share = "–" if r["not_above"] is None else f"{100 * r['not_above']:.1f} %"
        lines.append(f"| {r['task']} {r['metric']} | {r['setting']} | {points} | {interval} | {share} |")
    return lines
