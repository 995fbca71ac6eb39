"""The statistics the claims rest on, torch-free: log-log slopes (C1) and confidence
intervals of a difference measured once per seed, with the seed-to-seed spread and each
measurement's own error (C3, C4)."""

import math

import numpy as np
from scipy import stats


def paired_interval(differences, measurement_variances, confidence):
    """Interval for the mean over seeds of per-seed differences A_s − B_s (paired: both
    sides of a difference share the seed's initialisation and data order).

    Half-width: the larger of the seed interval (Student t over the n seeds, n − 1 degrees
    of freedom) and the measurements' own error (normal; ``measurement_variances`` holds
    each difference's variance, e.g. the test-set binomial variance of two accuracies).
    The spread of a few seeds can come out smaller than what a single measurement
    resolves; the interval is never narrower than that. None under two seeds: a seed
    spread needs two.
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


def loglog_slope(x, y):
    """Least-squares slope of log(y) vs log(x), over the points with y > 0; NaN with
    fewer than two."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = y > 0
    if keep.sum() < 2:
        return math.nan
    return float(np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)[0])
