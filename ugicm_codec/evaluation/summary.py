"""From per-image records to averaged curves, Bjøntegaard tables, results.json and results.md.

Curves are averaged the way CompressAI and the published anchors average: the mean of per-image
bpp, of per-image PSNR and of per-image MS-SSIM at each setting (MS-SSIM in dB is taken of that
mean). A point enters the BD tables only when every image of the run has a record for it.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path

import numpy as np

from . import baselines as baseline_codecs
from .anchors import load_anchors
from .bd import METHODS, BDError, bd_quality, bd_rate
from .metrics import ms_ssim_db
from .paired import RESAMPLES, draw_weights, paired_differences
from .plots import plot_curves, task_metric_names
from .runner import ORIGINAL, UGICM, EvalPlan, is_kodak

QUALITY_AXES = {"psnr": "PSNR", "ms_ssim_db": "MS-SSIM (dB)"}
KODAK_IMAGES = 24


def average_curves(plan: EvalPlan, records: dict) -> dict[str, list[dict]]:
    settings = {UGICM: [f"q{q:g}" for q in plan.qualities]}
    settings.update({name: [f"q{q:g}" for q in plan.ladder(name)] for name in plan.baselines})
    if plan.tasks:
        settings[ORIGINAL] = ["-"]
    curves: dict[str, list[dict]] = {}
    for codec, codec_settings in settings.items():
        for curve in plan.curves(codec):
            points = [p for p in (_average(plan, records, codec, curve, s) for s in codec_settings) if p]
            if points:
                curves[curve] = sorted(points, key=lambda p: (p["bpp"] is None, p["bpp"] or 0.0))
    return curves


def _average(plan: EvalPlan, records: dict, codec: str, curve: str, setting: str) -> dict | None:
    coder = plan.coder(codec)
    found = [records.get((im.name, plan.image_digests[im.name], curve, setting, coder)) for im in plan.images]
    found = [r for r in found if r is not None]
    if not found:
        return None
    point = {"setting": setting, "quality": found[0]["quality"], "n_images": len(found)}
    if codec != ORIGINAL:
        for key in ("bpp", "psnr", "encode_s", "decode_s"):
            point[key] = float(np.mean([r[key] for r in found]))
        scores = [r["ms_ssim"] for r in found]
        point["ms_ssim"] = None if None in scores else float(np.mean(scores))
        point["ms_ssim_db"] = ms_ssim_db(point["ms_ssim"])
    else:
        point["bpp"] = None
    point["tasks"] = {
        t.name: t.summarise([r["tasks"][t.name] for r in found if t.name in r.get("tasks", {})])
        for t in plan.tasks
    }
    return point


def bd_comparisons(curves: dict[str, list[dict]], anchors: dict[str, dict], n_images: int) -> list[dict]:
    """Every measured curve against every other measured curve and every published anchor,
    for each quality axis and each interpolation method."""
    references = [(name, "measured", pts) for name, pts in curves.items()]
    references += [(stem, "published", a["points"]) for stem, a in anchors.items()]
    rows = []
    for metric in QUALITY_AXES:
        for test, test_points in curves.items():
            if test == ORIGINAL:
                continue
            for ref, kind, ref_points in references:
                if ref == ORIGINAL or (kind == "measured" and ref == test):
                    continue
                for method in METHODS:
                    rows.append(_compare(test, test_points, ref, kind, ref_points, metric, method, n_images))
    return rows


def _compare(test, test_points, ref, kind, ref_points, metric, method, n_images) -> dict:
    row = {
        "test": test,
        "reference": ref,
        "reference_kind": kind,
        "metric": metric,
        "method": method,
        "bd_rate_percent": None,
        "bd_quality_db": None,
        "error": None,
    }
    tp = [p for p in test_points if p.get(metric) is not None and p.get("n_images", n_images) == n_images]
    rp = [p for p in ref_points if p.get(metric) is not None]
    args = ([p["bpp"] for p in rp], [p[metric] for p in rp], [p["bpp"] for p in tp], [p[metric] for p in tp])
    errors = []
    try:
        row["bd_rate_percent"] = bd_rate(*args, method=method)
    except BDError as e:
        errors.append(str(e))
    try:
        row["bd_quality_db"] = bd_quality(*args, method=method)
    except BDError as e:
        errors.append(str(e))
    if errors:
        row["error"] = "; ".join(dict.fromkeys(errors))
    return row


def build_results(plan: EvalPlan, records: dict) -> dict:
    kodak = is_kodak(plan.images)
    anchors = (
        load_anchors(plan.anchors_dir) if kodak and plan.anchors_dir and plan.anchors_dir.is_dir() else {}
    )
    curves = average_curves(plan, records)
    n = len(plan.images)
    incomplete = [
        f"{c} {p['setting']}: {p['n_images']} of {n} images"
        for c, pts in curves.items()
        for p in pts
        if p["n_images"] < n
    ]
    return {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "folder": str(plan.folder),
        "images": [p.name for p in plan.images],
        "kodak": kodak,
        "ugicm": None
        if not plan.qualities
        else {
            "model": plan.model["name"],
            "weights_sha256": plan.model["sha256"],
            "qualities": plan.qualities,
            "preferences": {p.label: p.beta for p in plan.preferences},
            "refine_steps": plan.refine_steps,
        },
        "baselines": {
            name: {
                "library": baseline_codecs.get(name).library(),
                "options": baseline_codecs.get(name).options,
                "qualities": plan.ladder(name),
            }
            for name in plan.baselines
        },
        "tasks": [t.name for t in plan.tasks],
        "curves": curves,
        "incomplete": incomplete,
        "anchors": anchors,
        "bd": bd_comparisons(curves, anchors, n),
        "matched": matched_task_table(curves),
        "paired": paired_task_intervals(plan, records),
    }


def paired_task_intervals(plan: EvalPlan, records: dict) -> list[dict]:
    """Bootstrap intervals of machine − human for every task metric, at each ugicm setting where
    both decodes of every image have a record, and for the mean over those settings."""
    labels = {p.label for p in plan.preferences}
    if not plan.tasks or not plan.qualities or not {"human", "machine"} <= labels:
        return []
    coder = plan.coder(UGICM)
    weights = draw_weights(len(plan.images))
    rows = []
    for task in plan.tasks:
        settings = {}
        for setting in (f"q{q:g}" for q in plan.qualities):
            pair = [
                [
                    records.get((im.name, plan.image_digests[im.name], f"{UGICM}/{pref}", setting, coder))
                    for im in plan.images
                ]
                for pref in ("human", "machine")
            ]
            if all(r is not None and task.name in r.get("tasks", {}) for decode in pair for r in decode):
                settings[setting] = tuple([r["tasks"][task.name] for r in decode] for decode in pair)
        rows += paired_differences(task, settings, weights)
    return rows


def interpolate_at_rate(points: list[dict], value, bpp: float) -> float | None:
    """A curve's value at ``bpp``, linear in log-rate between its two neighbouring points; None
    outside the curve's measured range (no extrapolation)."""
    xy = sorted((p["bpp"], value(p)) for p in points if p.get("bpp") and value(p) is not None)
    for (x0, y0), (x1, y1) in zip(xy, xy[1:]):
        if x0 <= bpp <= x1:
            t = 0.0 if x1 == x0 else (np.log(bpp) - np.log(x0)) / (np.log(x1) - np.log(x0))
            return float(y0 + t * (y1 - y0))
    return None


def matched_task_table(curves: dict[str, list[dict]]) -> list[dict]:
    """Every downstream-task metric at each ugicm rate point: the human and machine decodes of the
    same files, and each baseline read off its own curve at that same bpp."""
    by_setting = {
        pref: {p["setting"]: p for p in curves.get(f"{UGICM}/{pref}", [])} for pref in ("human", "machine")
    }
    points = list({**by_setting["machine"], **by_setting["human"]}.values())
    baselines = {c: pts for c, pts in curves.items() if "/" not in c and c != ORIGINAL}
    rows = []
    for point in points:
        for task, metric_values in point.get("tasks", {}).items():
            for metric in metric_values:
                if metric == "n":
                    continue
                pick = lambda p, t=task, k=metric: None if p is None else p.get("tasks", {}).get(t, {}).get(k)  # noqa: E731
                rows.append(
                    {
                        "setting": point["setting"],
                        "bpp": point["bpp"],
                        "task": task,
                        "metric": metric,
                        "human": pick(by_setting["human"].get(point["setting"])),
                        "machine": pick(by_setting["machine"].get(point["setting"])),
                        "baselines": {
                            c: interpolate_at_rate(pts, pick, point["bpp"]) for c, pts in baselines.items()
                        },
                    }
                )
    return rows


# ------------------------------------------------------------------------------- markdown
def markdown(results: dict, bd_method: str = "cubic") -> str:
    n = len(results["images"])
    lines = [
        "# ugicm evaluation",
        "",
        f"- images: {n} from `{results['folder']}`" + (" (Kodak)" if results["kodak"] else ""),
        f"- made: {results['created']}",
    ]
    if results["ugicm"]:
        u = results["ugicm"]
        prefs = ", ".join(f"{k} (β={v:g})" for k, v in u["preferences"].items())
        lines.append(
            f"- ugicm: model `{u['model']}`, weights sha256 `{u['weights_sha256'][:16]}…`, "
            f"qualities {', '.join(f'{q:g}' for q in u['qualities'])}, decoded for {prefs}"
            + (f", encoded with {u['refine_steps']} latent refinement steps" if u.get("refine_steps") else "")
        )
    for name, b in results["baselines"].items():
        lines.append(
            f"- {name}: {b['library']}, options {json.dumps(b['options'])}, "
            f"qualities {', '.join(map(str, b['qualities']))}"
        )
    lines.append(
        "- bpp from the size of each encoded file (headers included); PSNR over RGB; "
        "MS-SSIM at data range 255, in dB as -10·log10(1 - MS-SSIM) of the mean"
    )
    if results["incomplete"]:
        lines += [
            "",
            "**Incomplete points** (left out of the BD tables): " + "; ".join(results["incomplete"]),
        ]

    task_metrics = task_metric_names(results)
    lines += ["", "## Averaged rate-distortion points", ""]
    header = ["curve", "setting", "bpp", "PSNR (dB)", "MS-SSIM", "MS-SSIM (dB)"] + [
        f"{t} {m}" for t, m in task_metrics
    ]
    lines += _table_header(header)
    for curve, points in results["curves"].items():
        for p in points:
            cells = [
                curve,
                p["setting"],
                _num(p.get("bpp"), 4),
                _num(p.get("psnr"), 2),
                _num(p.get("ms_ssim"), 4),
                _num(p.get("ms_ssim_db"), 2),
            ]
            cells += [_num(p["tasks"].get(t, {}).get(m), 4) for t, m in task_metrics]
            lines.append("| " + " | ".join(cells) + " |")

    lines += _matched_table(results)

    notes: dict[str, int] = {}
    for metric, axis in QUALITY_AXES.items():
        for value_key, title, fmt in (
            ("bd_rate_percent", f"BD-rate at equal {axis}", "{:+.1f} %"),
            ("bd_quality_db", f"BD-{axis.replace(' (dB)', '')} at equal rate", "{:+.2f} dB"),
        ):
            sign = (
                "Negative: fewer bits than the reference for the same quality."
                if value_key == "bd_rate_percent"
                else "Positive: higher quality than the reference at the same rate."
            )
            lines += [
                "",
                f"## {title} ({bd_method})",
                "",
                f"Each column is a measured curve compared against each row's reference. {sign}",
                "",
            ]
            lines += _bd_table(results, metric, bd_method, value_key, fmt, notes)
    if results["anchors"] and n < KODAK_IMAGES:
        lines += [
            "",
            f"Published anchors average all {KODAK_IMAGES} Kodak images; this run measured {n}, "
            "so comparisons against them are indicative only.",
        ]
    if notes:
        lines += ["", "Why cells are empty:", ""]
        lines += [f"- [{i}] {text}" for text, i in notes.items()]
    lines += [
        "",
        "Plots: `rate_psnr.png`, `rate_msssim.png`. Every number: `results.json`; "
        "per-image records: `records.jsonl`.",
        "",
    ]
    return "\n".join(lines)


def _bd_table(results, metric, method, value_key, fmt, notes) -> list[str]:
    rows = [r for r in results["bd"] if r["metric"] == metric and r["method"] == method]
    tests = [c for c in results["curves"] if c != ORIGINAL]
    if not tests:
        return ["(no curves to compare)"]
    references = [(c, "measured") for c in tests] + [(a, "published") for a in results["anchors"]]
    cell = {(r["test"], r["reference"], r["reference_kind"]): r for r in rows}
    out = _table_header(["reference"] + tests)
    for ref, kind in references:
        cells = [ref + (" (published)" if kind == "published" else "")]
        for test in tests:
            r = cell.get((test, ref, kind))
            if r is None:
                cells.append("")
            elif r[value_key] is None:
                i = notes.setdefault(r["error"] or "not computed", len(notes) + 1)
                cells.append(f"n/a [{i}]")
            else:
                cells.append(fmt.format(r[value_key]))
        out.append("| " + " | ".join(cells) + " |")
    return out


def _matched_table(results) -> list[str]:
    rows = results.get("matched") or []
    if not rows:
        return []
    baselines = sorted({c for r in rows for c in r["baselines"]})
    intervals = {(p["task"], p["metric"], p["setting"]): p for p in results.get("paired") or []}
    level = next(iter(intervals.values()), {}).get("level", 0.95)
    interval = lambda key: (
        ""
        if key not in intervals or intervals[key]["low"] is None  # noqa: E731
        else f"{intervals[key]['low']:+.4f} … {intervals[key]['high']:+.4f}"
    )
    lines = [
        "",
        "## Machine tasks at matched rate",
        "",
        "Human and machine decodes of the same files at each ugicm setting; each baseline read off "
        "its own curve at that bpp (linear in log-rate, – outside its measured range). "
        "The last rows per metric average over the settings where every column has a value. "
        f"The interval ({100 * level:g} %) is a paired bootstrap over images: {RESAMPLES} draws "
        "of the image set, the same for both decodes and every setting.",
        "",
    ]
    lines += _table_header(
        [
            "task metric",
            "setting",
            "bpp",
            "human",
            "machine",
            "machine − human",
            f"{100 * level:g} % interval",
        ]
        + baselines
    )
    for key in dict.fromkeys((r["task"], r["metric"]) for r in rows):
        group = [r for r in rows if (r["task"], r["metric"]) == key]
        for r in group:
            delta = None if r["machine"] is None or r["human"] is None else r["machine"] - r["human"]
            lines.append(
                "| "
                + " | ".join(
                    [
                        f"{key[0]} {key[1]}",
                        r["setting"],
                        _num(r["bpp"], 3),
                        _num(r["human"], 4),
                        _num(r["machine"], 4),
                        _num(delta, 4),
                        interval((*key, r["setting"])),
                    ]
                    + [_num(r["baselines"].get(c), 4) for c in baselines]
                )
                + " |"
            )
        full = [r for r in group if r["human"] is not None and r["machine"] is not None]
        if full:
            mean = lambda f, full=full: float(np.mean([f(r) for r in full]))
            lines.append(
                "| "
                + " | ".join(
                    [
                        f"{key[0]} {key[1]}",
                        f"mean of {len(full)}",
                        "",
                        _num(mean(lambda r: r["human"]), 4),
                        _num(mean(lambda r: r["machine"]), 4),
                        _num(mean(lambda r: r["machine"] - r["human"]), 4),
                        interval((*key, "mean")) if len(full) == len(group) else "",
                    ]
                    + ["" for _ in baselines]
                )
                + " |"
            )
    return lines


def _table_header(cells: list[str]) -> list[str]:
    return ["| " + " | ".join(cells) + " |", "|" + "|".join("---" for _ in cells) + "|"]


def _num(value, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


# --------------------------------------------------------------------------------- writing
def write_results(plan: EvalPlan, records: dict, bd_method: str = "cubic") -> dict:
    results = build_results(plan, records)
    _atomic_text(plan.out / "results.json", json.dumps(results, indent=1) + "\n")
    _atomic_text(plan.out / "results.md", markdown(results, bd_method))
    plot_curves(results, plan.out)
    return results


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
