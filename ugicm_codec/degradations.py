"""Synthetic degradations of clean photos: what the restore decode (``--prefer restore``) is
trained to undo and evaluated on.

One place for both: training draws a random mix (``random_degradation``), the evaluation applies
fixed kinds and levels (``parse_degradation("noise:25")``), seeded per image so that every run
degrades every image identically. Pixels are uint8 HxWx3 in and out; the arithmetic is float64
numpy and SciPy, no torch.

Kinds and what ``level`` means:

- ``noise``: additive white Gaussian noise, σ = level on the 0-255 scale.
- ``poisson``: Poisson-Gaussian sensor noise, ``level`` photons at white (fewer is noisier), with
  read noise of σ = 2.
- ``defocus``: a disk-shaped point spread function of radius ``level`` pixels (anti-aliased).
- ``motion``: a straight motion streak ``level`` pixels long, at a random angle.
- ``lowlight``: brightness scaled by ``level`` (0.1-0.5) in linear light, then Poisson-Gaussian
  noise at 100·level photons at white: a dark, noisy shot whose target is the normal exposure.
- ``jpeg``: a JPEG round trip at quality ``level``.

Blurs are applied with reflected borders, so a crop's edges carry no dark frame.
"""

from __future__ import annotations

import io
import math
import zlib
from dataclasses import dataclass

import numpy as np

KINDS = ("noise", "poisson", "defocus", "motion", "lowlight", "jpeg")
# The training mix: each kind with the range its level is drawn from (uniformly), and a share of
# clean crops, on which the restore decode should stay the human one.
TRAINING_RANGES = {
    "noise": (3.0, 50.0),
    "poisson": (8.0, 200.0),
    "defocus": (0.8, 4.0),
    "motion": (3.0, 17.0),
    "lowlight": (0.12, 0.5),
    "jpeg": (10.0, 60.0),
}
CLEAN_SHARE = 0.1
# The evaluation's degradations: noise and blur at two levels each (the table in docs/results.md).
EVALUATED = ("noise:15", "noise:30", "defocus:1.5", "defocus:3")
READ_NOISE = 2.0


@dataclass(frozen=True)
class Degradation:
    kind: str
    level: float

    def __post_init__(self):
        if self.kind not in KINDS and self.kind != "clean":
            raise ValueError(f"unknown degradation {self.kind!r}; known: {', '.join(KINDS)}")
        if not math.isfinite(self.level) or self.level < 0:
            raise ValueError(f"degradation level must be a number >= 0, not {self.level}")

    @property
    def label(self) -> str:
        return "clean" if self.kind == "clean" else f"{self.kind}-{self.level:g}"

    def apply(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The degraded copy of HxWx3 uint8 ``rgb`` (the random draws from ``rng``)."""
        if self.kind == "clean":
            return rgb.copy()
        if self.kind == "jpeg":
            return _jpeg(rgb, int(round(self.level)))
        x = rgb.astype(np.float64)
        if self.kind == "noise":
            x = x + rng.normal(0.0, self.level, x.shape)
        elif self.kind == "poisson":
            x = _poisson_gaussian(x, self.level, rng)
        elif self.kind == "defocus":
            x = _blur(x, disk_kernel(self.level))
        elif self.kind == "motion":
            x = _blur(x, motion_kernel(self.level, rng.uniform(0.0, math.pi)))
        elif self.kind == "lowlight":
            linear = (x / 255.0) ** 2.2 * self.level
            x = _poisson_gaussian(255.0 * linear ** (1 / 2.2), 100.0 * self.level, rng)
        return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def parse_degradation(text: str) -> Degradation:
    """'noise:25' -> Degradation('noise', 25.0) (ValueError for anything else)."""
    kind, sep, level = text.partition(":")
    if not sep:
        raise ValueError(f"a degradation is KIND:LEVEL (e.g. noise:25), not {text!r}")
    try:
        value = float(level)
    except ValueError:
        raise ValueError(f"degradation level must be a number, not {level!r}") from None
    return Degradation(kind.strip().lower(), value)


def random_degradation(rng: np.random.Generator) -> Degradation:
    """One draw from the training mix: clean with ``CLEAN_SHARE``, else a kind chosen uniformly
    at a level drawn uniformly from its range."""
    if rng.random() < CLEAN_SHARE:
        return Degradation("clean", 0.0)
    kind = KINDS[rng.integers(len(KINDS))]
    low, high = TRAINING_RANGES[kind]
    return Degradation(kind, float(rng.uniform(low, high)))


def image_rng(seed: int, name: str, degradation: Degradation) -> np.random.Generator:
    """The generator that degrades image ``name``: the same for every run with the same seed."""
    key = zlib.crc32(f"{name}|{degradation.label}".encode())
    return np.random.default_rng([seed, key])


def disk_kernel(radius: float) -> np.ndarray:
    """A defocus PSF: a disk of ``radius`` pixels, its edge anti-aliased by 4x4 supersampling."""
    r = max(radius, 0.5)
    size = 2 * math.ceil(r) + 1
    sub = (np.arange(size * 4) + 0.5) / 4 - size / 2
    yy, xx = np.meshgrid(sub, sub, indexing="ij")
    inside = (yy**2 + xx**2 <= r * r).astype(np.float64)
    k = inside.reshape(size, 4, size, 4).mean(axis=(1, 3))
    return k / k.sum()


def motion_kernel(length: float, angle: float) -> np.ndarray:
    """A straight motion streak ``length`` pixels long at ``angle`` radians, as a PSF."""
    length = max(length, 1.0)
    size = 2 * math.ceil(length / 2) + 1
    k = np.zeros((size, size))
    c = size // 2
    for t in np.linspace(-length / 2, length / 2, 8 * int(math.ceil(length)) + 1):
        y, x = c + t * math.sin(angle), c + t * math.cos(angle)
        y0, x0 = int(math.floor(y)), int(math.floor(x))
        fy, fx = y - y0, x - x0
        for dy, dx, w in (
            (0, 0, (1 - fy) * (1 - fx)),
            (0, 1, (1 - fy) * fx),
            (1, 0, fy * (1 - fx)),
            (1, 1, fy * fx),
        ):
            if 0 <= y0 + dy < size and 0 <= x0 + dx < size:
                k[y0 + dy, x0 + dx] += w
    return k / k.sum()


def _blur(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    from scipy.signal import fftconvolve

    ph, pw = kernel.shape[0] // 2, kernel.shape[1] // 2
    padded = np.pad(x, ((ph, ph), (pw, pw), (0, 0)), mode="reflect")
    return fftconvolve(padded, kernel[:, :, None], mode="valid", axes=(0, 1))


def _poisson_gaussian(x: np.ndarray, photons: float, rng: np.random.Generator) -> np.ndarray:
    photons = max(photons, 1.0)
    counts = rng.poisson(np.clip(x, 0, 255) / 255.0 * photons)
    return counts * (255.0 / photons) + rng.normal(0.0, READ_NOISE, x.shape)


def _jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=max(1, min(95, quality)))
    buffer.seek(0)
    with Image.open(buffer) as im:
        return np.asarray(im.convert("RGB"))
