"""Bjøntegaard delta rate and delta quality between two rate-distortion curves.

The method of G. Bjøntegaard, "Calculation of average PSNR differences between RD-curves"
(ITU-T VCEG-M33, 2001), as used by CompressAI, JVET and most learned-compression papers:

* BD-rate: express log-rate as a function of quality for each curve, integrate both over the
  quality interval the two curves share, and turn the mean log-rate difference into a percentage,
  ``exp(mean) - 1``. Negative means the test curve needs fewer bits for the same quality.
* BD-quality (BD-PSNR when the quality is PSNR): express quality as a function of log-rate and
  take the mean difference over the log-rate interval the two curves share. Positive means the
  test curve is better.

Two ways to turn the points into a function:

* ``"cubic"``: one least-squares cubic polynomial per curve (VCEG-M33; needs 4 or more points).
* ``"pchip"``: piecewise cubic Hermite interpolation with Fritsch–Carlson monotone slopes (the
  variant of later common-test-condition sheets): passes through every point and never
  overshoots between them; needs 2 or more points with distinct abscissae.

Both are integrated exactly. Rates may be in any unit (bpp, kbit/s): only ratios matter. Quality
may be any higher-is-better figure (PSNR in dB, MS-SSIM in dB). Natural logarithms are used
throughout; the base cancels out of the result.
"""

from __future__ import annotations

import numpy as np

METHODS = ("cubic", "pchip")


class BDError(ValueError):
    """The two curves do not allow a Bjøntegaard delta (too few points, no overlap …)."""


def bd_rate(ref_rate, ref_quality, test_rate, test_quality, method: str = "cubic") -> float:
    """Average rate difference of ``test`` against ``ref`` at equal quality, in percent."""
    ref_q, ref_log_r = _curve(ref_rate, ref_quality, "reference")
    test_q, test_log_r = _curve(test_rate, test_quality, "test")
    mean_log_diff = _mean_difference(ref_q, ref_log_r, test_q, test_log_r, method, "quality")
    return float(np.expm1(mean_log_diff) * 100.0)


def bd_quality(ref_rate, ref_quality, test_rate, test_quality, method: str = "cubic") -> float:
    """Average quality difference of ``test`` against ``ref`` at equal rate (dB for PSNR)."""
    ref_q, ref_log_r = _curve(ref_rate, ref_quality, "reference")
    test_q, test_log_r = _curve(test_rate, test_quality, "test")
    return float(_mean_difference(ref_log_r, ref_q, test_log_r, test_q, method, "rate"))


bd_psnr = bd_quality


# ------------------------------------------------------------------------------ internals
def _curve(rate, quality, which: str) -> tuple[np.ndarray, np.ndarray]:
    rate = np.asarray(rate, dtype=np.float64).ravel()
    quality = np.asarray(quality, dtype=np.float64).ravel()
    if rate.shape != quality.shape:
        raise BDError(f"{which} curve has {rate.size} rates but {quality.size} quality values")
    if rate.size == 0:
        raise BDError(f"{which} curve has no points")
    if not (np.all(np.isfinite(rate)) and np.all(np.isfinite(quality))):
        raise BDError(f"{which} curve has a non-finite value")
    if np.any(rate <= 0):
        raise BDError(f"{which} curve has a rate that is not positive")
    return quality, np.log(rate)


def _mean_difference(ref_x, ref_y, test_x, test_y, method: str, axis: str) -> float:
    """Mean of test(x) - ref(x) over the x interval both curves cover."""
    if method not in METHODS:
        raise ValueError(f"unknown BD method {method!r}; use one of {', '.join(METHODS)}")
    low = max(ref_x.min(), test_x.min())
    high = min(ref_x.max(), test_x.max())
    if not high > low:
        raise BDError(f"the curves do not overlap in {axis}")
    integrate = _integral_cubic if method == "cubic" else _integral_pchip
    area = integrate(test_x, test_y, low, high) - integrate(ref_x, ref_y, low, high)
    return area / (high - low)


def _integral_cubic(x: np.ndarray, y: np.ndarray, low: float, high: float) -> float:
    if np.unique(x).size < 4:
        raise BDError("the cubic fit needs at least 4 points with distinct values")
    antiderivative = np.polyint(np.polyfit(x, y, 3))
    return float(np.polyval(antiderivative, high) - np.polyval(antiderivative, low))


def _integral_pchip(x: np.ndarray, y: np.ndarray, low: float, high: float) -> float:
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    if x.size < 2:
        raise BDError("piecewise interpolation needs at least 2 points")
    if np.any(np.diff(x) == 0):
        raise BDError("piecewise interpolation needs distinct values (two points share one)")
    slopes = pchip_slopes(x, y)
    total = 0.0
    for k in range(x.size - 1):
        a, b = max(low, x[k]), min(high, x[k + 1])
        if b <= a:
            continue
        h = x[k + 1] - x[k]
        secant = (y[k + 1] - y[k]) / h
        # The Hermite segment as a polynomial in s = x - x[k]: c0 + c1 s + c2 s^2 + c3 s^3.
        c0, c1 = y[k], slopes[k]
        c2 = (3 * secant - 2 * slopes[k] - slopes[k + 1]) / h
        c3 = (slopes[k] + slopes[k + 1] - 2 * secant) / h**2

        def primitive(s, c0=c0, c1=c1, c2=c2, c3=c3):  # this segment's coefficients
            return c0 * s + c1 * s**2 / 2 + c2 * s**3 / 3 + c3 * s**4 / 4

        total += primitive(b - x[k]) - primitive(a - x[k])
    return float(total)


def pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Derivatives at the points for monotone piecewise cubic Hermite interpolation.

    Fritsch & Carlson (1980) with Fritsch & Butland's weighted harmonic mean inside and the
    shape-preserving three-point formula at both ends (the rule of MATLAB's and SciPy's pchip).
    ``x`` must be strictly increasing.
    """
    h = np.diff(x)
    secant = np.diff(y) / h
    n = x.size
    if n == 2:
        return np.full(2, secant[0])
    d = np.zeros(n)
    for k in range(1, n - 1):
        s0, s1 = secant[k - 1], secant[k]
        if s0 * s1 <= 0:
            continue  # a local extremum or a flat piece: zero slope keeps the shape
        w0, w1 = 2 * h[k] + h[k - 1], h[k] + 2 * h[k - 1]
        d[k] = (w0 + w1) / (w0 / s0 + w1 / s1)
    d[0] = _end_slope(h[0], h[1], secant[0], secant[1])
    d[-1] = _end_slope(h[-1], h[-2], secant[-1], secant[-2])
    return d


def _end_slope(h0: float, h1: float, s0: float, s1: float) -> float:
    d = ((2 * h0 + h1) * s0 - h0 * s1) / (h0 + h1)
    if np.sign(d) != np.sign(s0):
        return 0.0
    if np.sign(s0) != np.sign(s1) and abs(d) > abs(3 * s0):
        return 3 * s0
    return d
