"""Bjøntegaard deltas against values worked out by hand."""

import math

import numpy as np
import pytest

from ugicm_codec.evaluation.bd import METHODS, BDError, bd_psnr, bd_quality, bd_rate, pchip_slopes

RATES = np.array([0.12, 0.25, 0.48, 0.9, 1.6])
PSNR = np.array([27.1, 29.4, 31.9, 34.2, 36.8])


@pytest.mark.parametrize("method", METHODS)
def test_a_curve_against_itself_is_zero(method):
    assert bd_rate(RATES, PSNR, RATES, PSNR, method) == pytest.approx(0.0, abs=1e-9)
    assert bd_psnr(RATES, PSNR, RATES, PSNR, method) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_ten_percent_fewer_bits_everywhere_is_minus_ten_percent(method):
    # log(0.9 R) = log R + log 0.9 at every quality: the mean log difference is exactly log 0.9.
    assert bd_rate(RATES, PSNR, 0.9 * RATES, PSNR, method) == pytest.approx(-10.0, abs=1e-9)
    assert bd_rate(0.9 * RATES, PSNR, RATES, PSNR, method) == pytest.approx(100 / 0.9 - 100, abs=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_one_db_better_everywhere_is_plus_one_db(method):
    assert bd_psnr(RATES, PSNR, RATES, PSNR + 1.0, method) == pytest.approx(1.0, abs=1e-9)
    assert bd_psnr(RATES, PSNR + 1.0, RATES, PSNR, method) == pytest.approx(-1.0, abs=1e-9)
    assert bd_rate(RATES, PSNR, RATES, PSNR + 1.0, method) < 0


@pytest.mark.parametrize("method", METHODS)
def test_two_straight_lines_of_different_slope(method):
    """Worked by hand. With t = ln R:
    reference  D = 30 + 5t at t = -2, -1, 0, 1     (D from 20 to 35)
    test       D = 31 + 4t at t = -1.5, -0.5, 0.5, 1.5   (D from 25 to 37)
    Both fits are exact (a line is a cubic, and pchip reproduces lines).
    BD-PSNR: the test is better by 1 - t; the shared t range is [-1.5, 1], whose mean t is -0.25,
      so the mean gain is 1.25 dB.
    BD-rate: t_test(D) - t_ref(D) = (D - 31)/4 - (D - 30)/5 = (D - 35)/20; over the shared D range
      [25, 35] the mean D is 30, so the mean log difference is -0.25 and BD-rate = e^-0.25 - 1.
    """
    t_ref, t_test = np.array([-2.0, -1, 0, 1]), np.array([-1.5, -0.5, 0.5, 1.5])
    r_ref, d_ref = np.exp(t_ref), 30 + 5 * t_ref
    r_test, d_test = np.exp(t_test), 31 + 4 * t_test
    assert bd_psnr(r_ref, d_ref, r_test, d_test, method) == pytest.approx(1.25, abs=1e-9)
    assert bd_rate(r_ref, d_ref, r_test, d_test, method) == pytest.approx(
        100 * (math.exp(-0.25) - 1), abs=1e-9
    )


def test_cubic_curves_are_fitted_exactly():
    """Four points of a cubic are fitted exactly by VCEG-M33's cubic, so the delta is analytic:
    reference Q = t^3, test Q = t^3 + t^2 at t = -1, -1/3, 1/3, 1; the mean of t^2 over [-1, 1] is 1/3."""
    t = np.array([-1.0, -1 / 3, 1 / 3, 1.0])
    assert bd_quality(np.exp(t), t**3, np.exp(t), t**3 + t**2, "cubic") == pytest.approx(1 / 3, abs=1e-9)


def test_point_order_does_not_matter():
    order = [3, 0, 4, 1, 2]
    for method in METHODS:
        a = bd_rate(RATES, PSNR, RATES * 0.8, PSNR + 0.3, method)
        b = bd_rate(RATES[order], PSNR[order], (RATES * 0.8)[order], (PSNR + 0.3)[order], method)
        assert a == pytest.approx(b, abs=1e-9)


def test_pchip_matches_scipy():
    interpolate = pytest.importorskip("scipy.interpolate")
    rng = np.random.default_rng(7)
    for _ in range(20):
        x = np.sort(rng.uniform(0, 10, 6))
        y = rng.normal(size=6)
        reference = interpolate.PchipInterpolator(x, y)
        assert np.allclose(pchip_slopes(x, y), reference.derivative()(x))
        # Against a flat reference (interpolated as exactly 0), BD-quality is the test interpolant's
        # mean over the shared range, which SciPy integrates independently.
        expected = reference.integrate(x[0], x[-1]) / (x[-1] - x[0])
        assert bd_quality(np.exp(x), np.zeros(6), np.exp(x), y, "pchip") == pytest.approx(expected, abs=1e-12)


def test_errors_are_bd_errors():
    with pytest.raises(BDError, match="overlap"):
        bd_rate(RATES, PSNR, RATES, PSNR + 20)
    with pytest.raises(BDError, match="4 points"):
        bd_rate(RATES[:3], PSNR[:3], RATES[:3], PSNR[:3], "cubic")
    assert bd_rate(RATES[:2], PSNR[:2], 0.9 * RATES[:2], PSNR[:2], "pchip") == pytest.approx(-10.0)
    with pytest.raises(BDError, match="distinct"):
        bd_psnr([0.1, 0.1, 0.2], [30, 31, 32], [0.1, 0.15, 0.2], [30, 31, 32], "pchip")
    with pytest.raises(BDError, match="positive"):
        bd_rate([0, 0.1, 0.2, 0.3], PSNR[:4], RATES[:4], PSNR[:4])
    with pytest.raises(BDError, match="no points"):
        bd_rate([], [], RATES, PSNR)
    with pytest.raises(ValueError, match="unknown BD method"):
        bd_rate(RATES, PSNR, RATES, PSNR, "spline")
