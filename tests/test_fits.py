"""The statistics under the claims' verdicts, against closed forms and simulation."""

import math

import numpy as np
import pytest

from resdepth import fits


@pytest.mark.parametrize(
    "counts",
    [(93, 3, 1, 3), (50, 0, 0, 50), (0, 10, 0, 0), (40, 25, 25, 10)],
)
def test_paired_test_variance_is_the_variance_of_the_mean_outcome_difference(counts):
    """Constructed pairs (both right, only A, only B, both wrong): the variance of the mean
    of d = a − b over the N examples, computed from the d vector itself."""
    both, only_a, only_b, neither = counts
    a = np.array([1] * both + [1] * only_a + [0] * only_b + [0] * neither, bool)
    b = np.array([1] * both + [0] * only_a + [1] * only_b + [0] * neither, bool)
    n = len(a)
    d = a.astype(float) - b
    assert fits.paired_test_variance(a, b) == pytest.approx(d.var() / n, rel=1e-12, abs=1e-18)
    closed = (only_a / n + only_b / n - (only_a / n - only_b / n) ** 2) / n
    assert fits.paired_test_variance(a, b) == pytest.approx(closed, rel=1e-12, abs=1e-18)


def test_paired_test_variance_of_identical_classifiers_is_zero():
    a = np.array([True, False, True])
    assert fits.paired_test_variance(a, a) == 0.0


def test_paired_test_variance_refuses_unequal_outcomes():
    with pytest.raises(ValueError, match="equally long"):
        fits.paired_test_variance(np.ones(3, bool), np.ones(4, bool))


@pytest.mark.parametrize(
    "effect, seed_sd, measurement_sd, n",
    [(1.0, 1.0, 0.0, 5), (1.0, 1.0, 0.8, 5), (0.6, 0.2, 0.1, 2), (0.035, 0.01, 0.03, 4)],
)
def test_decision_probability_matches_a_simulation_of_the_interval(
    effect, seed_sd, measurement_sd, n
):
    """Draw each seed's difference, apply paired_interval as the claims do, count how
    often it lies above 0: within 10 % of the computed probability."""
    rng = np.random.default_rng(0)
    draws = rng.normal(effect, seed_sd, size=(8000, n))
    variances = [measurement_sd**2] * n
    decided = np.mean([fits.paired_interval(d, variances, 0.95)["low"] > 0 for d in draws])
    computed = fits.decision_probability(effect, seed_sd, measurement_sd, n, 0.95)
    assert decided == pytest.approx(computed, rel=0.1)


def test_smallest_decided_effect_is_decided_with_the_asked_power():
    effect = fits.smallest_decided_effect(0.05, 0.01, 3, 0.95, 0.8)
    assert fits.decision_probability(effect, 0.05, 0.01, 3, 0.95) == pytest.approx(0.8, abs=1e-6)
    assert fits.smallest_decided_effect(0.05, 0.01, 1, 0.95, 0.8) is None  # no seed noise


def test_seeds_needed_is_the_fewest_that_reach_the_power():
    for effect, seed_sd, measurement_sd in ((0.01, 0.005, 0.01), (0.3, 0.05, 0.0), (1, 1, 0)):
        n = fits.seeds_needed(effect, seed_sd, measurement_sd, 0.95, 0.8)
        probability = [
            fits.decision_probability(effect, seed_sd, measurement_sd, k, 0.95) for k in (n - 1, n)
        ]
        assert probability[0] < 0.8 <= probability[1]
    assert fits.seeds_needed(1e-4, 1.0, 0.0, 0.95, 0.8, most=50) is None


def test_without_any_noise_one_step_above_zero_is_decided():
    assert fits.decision_probability(1e-9, 0.0, 0.0, 2, 0.95) == 1.0
    assert fits.smallest_decided_effect(0.0, 0.0, 2, 0.95, 0.8) == 0.0


def test_loglog_slope_leaves_out_zeros_and_needs_its_points():
    x = np.array([1e-3, 1e-2, 1e-1, 1.0])
    y = 5 * x**3
    assert fits.loglog_slope(x, y) == pytest.approx(3.0, rel=1e-12)
    y_with_zero = np.array([0.0, *y[1:]])  # an exact zero has no logarithm: left out
    assert fits.loglog_slope(x, y_with_zero) == pytest.approx(3.0, rel=1e-12)
    assert math.isnan(fits.loglog_slope(x[:2], y[:2], min_points=3))
    assert math.isnan(fits.loglog_slope(x, [0.0, 0.0, 0.0, 1.0]))
