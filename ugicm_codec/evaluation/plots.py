"""Rate-quality plots (PNG, matplotlib's non-interactive Agg backend).

Measured curves are drawn solid with markers; published anchors thin and dashed behind them. The
bpp axis ends a little past the measured curves, so anchors that run to 4 bpp do not squeeze
the region where the comparison happens.
"""

from __future__ import annotations

from pathlib import Path

from .runner import ORIGINAL


def task_metric_names(results) -> list[tuple[str, str]]:
    """(task, metric) pairs present in any curve point, in order of appearance."""
    names = []
    for points in results["curves"].values():
        for p in points:
            for task, figures in p.get("tasks", {}).items():
                names += [(task, m) for m in figures if m != "n" and (task, m) not in names]
    return names


def plot_curves(results: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    axes = [("psnr", "PSNR (dB)", "rate_psnr.png"), ("ms_ssim_db", "MS-SSIM (dB)", "rate_msssim.png")]
    for task, metric in task_metric_names(results):
        axes.append((f"{task}.{metric}", f"{task} {metric}", f"rate_{task}_{metric}.png"))
    for key, label, file_name in axes:
        fig, ax = plt.subplots(figsize=(10, 5.5), dpi=120)
        measured = {
            c: [
                (p["bpp"], _value(p, key))
                for p in pts
                if p.get("bpp") is not None and _value(p, key) is not None
            ]
            for c, pts in results["curves"].items()
            if c != ORIGINAL
        }
        measured = {c: xy for c, xy in measured.items() if xy}
        if not measured:
            plt.close(fig)
            continue
        x_max = max(x for xy in measured.values() for x, _ in xy) * 1.1
        visible_y = [y for xy in measured.values() for _, y in xy]
        if "." not in key:
            faint = plt.get_cmap("tab20")
            for i, anchor in enumerate(results.get("anchors", {}).values()):
                xy = [(p["bpp"], p[key]) for p in anchor["points"] if p.get(key) is not None]
                shown = [(x, y) for x, y in xy if x <= x_max]
                if not shown:
                    continue
                visible_y += [y for _, y in shown]
                name = anchor["name"].split(" (")[0]  # drop the source note some names carry
                ax.plot(
                    *zip(*_clip(xy, x_max)),
                    linestyle="--",
                    linewidth=0.9,
                    color=faint(2 * (i % 10) + 1),
                    label=f"{name} (published)",
                )
        strong = plt.get_cmap("tab10")
        for i, (curve, xy) in enumerate(measured.items()):
            ax.plot(*zip(*xy), marker="o", markersize=3.5, linewidth=1.8, color=strong(i % 10), label=curve)
        if "." in key:
            original = results["curves"].get(ORIGINAL)
            value = _value(original[0], key) if original else None
            if value is not None:
                ax.axhline(value, color="black", linewidth=0.8, linestyle=":", label="original images")
                visible_y.append(value)
        ax.set_xlim(0, x_max)
        low, high = min(visible_y), max(visible_y)
        pad = (high - low) * 0.05 or 0.5
        ax.set_ylim(low - pad, high + pad)
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel(label)
        ax.set_title(f"{label} vs rate, {len(results['images'])} images")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        fig.tight_layout()
        path = out / file_name
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


def _clip(xy, x_max):
    """Points up to x_max plus the first one past it, so the line runs to the plot's edge."""
    xy = sorted(xy)
    inside = [p for p in xy if p[0] <= x_max]
    beyond = [p for p in xy if p[0] > x_max]
    return inside + beyond[:1]


def _value(point: dict, key: str):
    if "." in key:
        task, metric = key.split(".", 1)
        return point.get("tasks", {}).get(task, {}).get(metric)
    return point.get(key)
