"""How sure is a difference between two decodes of the same files? A paired bootstrap over images.

The human and the machine decode of each ``.ugc`` file are scored on the same images, so their
difference is a paired one: the image set is drawn again with replacement, both decodes are
scored on each draw (the same images for both), and the difference's percentile interval is read
off the draws (Efron & Tibshirani, *An Introduction to the Bootstrap*, ch. 13). Every point of
the rate ladder uses the same draws, so the mean difference over the ladder (what a target of
"so many points better on average" is about) gets its own interval as well.

Dataset-level metrics (mAP, mIoU) are recomputed on each draw, not averaged per image: each task
scores many draws at once (``Task.resampled``). The draws are seeded, so results.json does not
change between two summaries of the same records.
"""

from __future__ import annotations

import numpy as np

RESAMPLES = 2000
LEVEL = 0.95
SEED = 0


def draw_weights(images: int, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """resamples × images: how many times each image is drawn, ``images`` draws per resample."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(images, np.full(images, 1.0 / images), size=resamples).astype(np.float64)


def percentile_interval(draws: np.ndarray, level: float = LEVEL) -> tuple[float, float] | tuple[None, None]:
    draws = draws[np.isfinite(draws)]
    if not len(draws):
        return None, None
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(draws, [tail, 100 - tail])
    return float(low), float(high)


def paired_differences(
    task, settings: dict[str, tuple[list[dict], list[dict]]], weights: np.ndarray, level: float = LEVEL
) -> list[dict]:
    """Intervals of second − first for each of ``task``'s metrics, at each setting and for their
    mean. ``settings`` maps a setting to (first, second): the two decodes' outcomes, both in the
    order of ``weights``' columns."""
    rows, per_setting = [], {}
    for setting, (first, second) in settings.items():
        a, b = task.resampled(first, weights), task.resampled(second, weights)
        for metric in (m for m in a if m in b):
            difference = b[metric] - a[metric]
            per_setting.setdefault(metric, []).append(difference)
            rows.append(_row(setting, task.name, metric, difference, level))
    for metric, differences in per_setting.items():
        if len(differences) > 1:
            rows.append(_row("mean", task.name, metric, np.mean(differences, axis=0), level))
    return rows


def _row(setting: str, task: str, metric: str, difference: np.ndarray, level: float) -> dict:
    low, high = percentile_interval(difference, level)
    finite = difference[np.isfinite(difference)]
    return {
        "setting": setting,
        "task": task,
        "metric": metric,
        "level": level,
        "low": low,
        "high": high,
        # The share of draws where the second decode is not ahead: small when it truly is.
        "not_above": float(np.mean(finite <= 0)) if len(finite) else None,
        "resamples": int(len(finite)),
    }
