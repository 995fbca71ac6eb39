"""The statistics the claims rest on, torch-free: log-log slopes (C1), confidence
intervals of a difference measured once per seed, with the seed-to-seed spread and each
measurement's own error (C3, C4), the test-set error of a difference of two classifiers
scored on the same test examples (C3), and the power of those intervals: the smallest
effect they decide and the seeds an effect needs (C3, C4)."""

import math

import numpy as np
from scipy import integrate, optimize, stats

#: Fewest points a log-log slope is fitted through: two points always make a line, three
#: are the fewest whose fit can show a bend.
MIN_SLOPE_POINTS = 3


def paired_interval(differences, measurement_variances, confidence):
    """Interval for the mean over seeds of per-seed differences A_s − B_s (paired: both
    sides of a difference share the seed's initialisation and data order).

    Half-width: the larger of the seed interval (Student t over the n seeds, n − 1 degrees
    of freedom) and the measurements' own error (normal; ``measurement_variances`` holds
    each difference's variance, e.g. ``paired_test_variance`` of two classifiers' test
    outcomes). The spread of a few seeds can come out smaller than what a single
    measurement resolves; the interval is never narrower than that. None under two seeds:
    a seed spread needs two.
    """
    differences = np.asarray(differences, dtype=float)
    n = len(differences)
    if n < 2:
        return None
    p = (1 + confidence) / 2
    seed_half = stats.t.ppf(p, n - 1) * differences.std(ddof=1) / math.sqrt(n)
    measurement_half = stats.norm.ppf(p) * math.sqrt(float(np.sum(measurement_variances))) / n
    half = max(seed_half, measurement_half)
    mean = float(differences.mean())
    return {
        "mean": mean,
        "low": mean - half,
        "high": mean + half,
        "confidence": confidence,
        "n_seeds": n,
        "seed_half_width": float(seed_half),
        "measurement_half_width": float(measurement_half),
    }


def paired_test_variance(correct_a, correct_b):
    """Variance of acc(A) − acc(B) from the test set's sampling, when A and B are scored
    on the same N test examples: the variance of the mean of d_i = a_i − b_i ∈ {−1, 0, 1},
    (p10 + p01 − (p10 − p01)²) / N, where p10 is the share of examples only A gets right
    and p01 the share only B gets right. Examples both get right (or wrong) add nothing:
    what the independent-binomial formula counts twice.
    """
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise ValueError(
            f"paired test outcomes need two equally long, non-empty vectors, got {a.shape} "
            f"and {b.shape}"
        )
    only_a, only_b = float(np.mean(a & ~b)), float(np.mean(~a & b))
    return (only_a + only_b - (only_a - only_b) ** 2) / len(a)


def decision_probability(effect, seed_sd, measurement_sd, n_seeds, confidence):
    """Probability that ``paired_interval`` lies above 0 for a true mean difference
    ``effect`` > 0, when each seed's difference is normal with standard deviation
    ``seed_sd`` and the interval's measurement half-width is z · ``measurement_sd`` / √n
    (``measurement_sd``: the standard deviation of one seed's measurement error).

    Exact for that rule: the seed mean and the seed standard deviation s are independent
    for normal differences, so the probability is E_s Φ((effect − max(t s, z m) / √n) /
    (seed_sd / √n)), one integral over s's scaled chi distribution.
    """
    n = n_seeds
    if n < 2:
        return 0.0
    p = (1 + confidence) / 2
    t, z = stats.t.ppf(p, n - 1), stats.norm.ppf(p)
    measurement_half = z * measurement_sd / math.sqrt(n)
    if seed_sd == 0:
        return float(effect > measurement_half)
    df = n - 1
    scale = seed_sd / math.sqrt(n)

    def integrand(chi):  # s = seed_sd · chi / √df, chi ~ chi(df)
        s = seed_sd * chi / math.sqrt(df)
        half = max(t * s / math.sqrt(n), measurement_half)
        return stats.norm.cdf((effect - half) / scale) * stats.chi.pdf(chi, df)

    upper = stats.chi.ppf(1 - 1e-12, df)
    value, _ = integrate.quad(integrand, 0, upper, limit=200)
    return float(min(value, 1.0))


def smallest_decided_effect(seed_sd, measurement_sd, n_seeds, confidence, power):
    """The smallest true difference the interval decides (lies above 0) with probability
    ``power``, for ``n_seeds`` seeds; None under two seeds."""
    if n_seeds < 2:
        return None
    spread = max(seed_sd, measurement_sd)
    if spread == 0:
        return 0.0

    def shortfall(effect):
        return decision_probability(effect, seed_sd, measurement_sd, n_seeds, confidence) - power

    high = spread
    while shortfall(high) < 0:
        high *= 2
    return float(optimize.brentq(shortfall, 0.0, high, xtol=1e-9 * spread))


def seeds_needed(effect, seed_sd, measurement_sd, confidence, power, most=1000):
    """The fewest seeds whose interval decides a true difference ``effect`` with
    probability ``power`` (each seed's measurement error unchanged); None if even
    ``most`` seeds do not. The probability grows with the seeds: doubling finds a
    number that is enough, bisection the fewest."""

    def enough(n):
        return decision_probability(effect, seed_sd, measurement_sd, n, confidence) >= power

    if effect <= 0 or not enough(most):
        return None
    low, high = 1, 2  # low: not enough (one seed decides nothing)
    while not enough(high):
        low, high = high, min(2 * high, most)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return high


def loglog_slope(x, y, min_points=2):
    """Least-squares slope of log(y) vs log(x), over the points with y > 0 (a zero or
    negative y has no logarithm: it is left out, never clipped); NaN with fewer than
    ``min_points`` such points."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = y > 0
    if keep.sum() < max(min_points, 2):
        return math.nan
    return float(np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)[0])


def power_figures(differences, measurement_variances, confidence, power, reference):
    """The power of ``paired_interval`` on these per-seed differences: the smallest true
    difference it decides with probability ``power`` with this many seeds, and the seeds
    a true difference ``reference`` needs, taking the seed spread and the mean
    measurement variance as measured here (plug-in estimates, stated with the figures)."""
    differences = np.asarray(differences, dtype=float)
    seed_sd = float(np.std(differences, ddof=1))
    measurement_sd = math.sqrt(float(np.mean(measurement_variances)))
    most = 1000
    return {
        "power": power,
        "confidence": confidence,
        "n_seeds": len(differences),
        "seed_sd": seed_sd,
        "measurement_sd": measurement_sd,
        "smallest_decided": smallest_decided_effect(
            seed_sd, measurement_sd, len(differences), confidence, power
        ),
        "reference": reference,
        "seeds_for_reference": seeds_needed(
            reference, seed_sd, measurement_sd, confidence, power, most
        ),
        "most_seeds": most,
    }
