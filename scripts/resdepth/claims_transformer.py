"""Claims about transformers (issue 20), checked on the transformer studies' tables.

Each ``check_*`` takes its tables (DataFrames read from the files of
docs/file-contracts.md; None when the config does not produce them) and its claim's
thresholds (the config's ``claims.C1T`` … ``claims.C7``), and returns ``{"test", "verdict",
"summary", "measured"}``: the fields of a ``claims.Finding``, which claims.CLAIMS makes of
it, with the same verdicts. Only transformer rows are read: the MLP and conv families
have their own checks (claims.py), never pooled with these.

- ``check_truncation`` (C1 on transformers): every fitted slope within the tolerance of K+1.
- ``check_init_norms`` (C2 on transformers): norm-free λ=1 explodes exponentially, pre-LN
  λ=1 grows like n^{1/2} (a power, not an exponential), λ=1/√n and 1/n stay bounded.
- ``check_radius`` (C6, new): ρ̂·√n = O(1) at initialisation, both norms.
- ``check_recall_order`` (C7, new): order 1 cannot solve recall, the network can.
Intervals are Student-t over seeds at the configured confidence (``fits.paired_interval``).
"""

import math

import numpy as np

from resdepth.fits import loglog_slope, paired_interval

HOLDS = "holds"
DOES_NOT_HOLD = "does not hold"
INCONCLUSIVE = "inconclusive"
NOT_MEASURED = "not measured"

#: The statements of the transformer claims (claims.CLAIMS prints them).
STATEMENTS = {
    "C1T": "C1 on transformers: the order-K Taylor truncation error of a fresh transformer "
    "scales as λ^(K+1) (softmax, LayerNorm and GELU are smooth: no kinks).",
    "C2T": "C2 on transformers: at initialisation the norm-free λ=1 stream explodes "
    "exponentially in depth, the pre-LN λ=1 stream grows only like √n, and λ=1/√n, "
    "λ=1/n stay bounded with either norm.",
    "C6": "Radius of convergence: at initialisation the λ-series of a transformer converges "
    "for λ below ρ with ρ·√n = O(1): λ=1/√n sits at the edge, λ=1/n inside, λ=1 outside.",
    "C7": "Order needed for recall: the order-1 truncation (an ensemble of one-module "
    "models) cannot do associative recall, which the trained λ=1 network does.",
}


def _result(test, verdict, summary, measured=None):
    return {"test": test, "verdict": verdict, "summary": summary, "measured": measured or {}}


def _combined(verdicts):
    """Any part that does not hold decides; all hold: holds; else inconclusive if a part
    is, else not measured."""
    verdicts = list(verdicts)
    if DOES_NOT_HOLD in verdicts:
        return DOES_NOT_HOLD
    if verdicts and all(v == HOLDS for v in verdicts):
        return HOLDS
    return INCONCLUSIVE if INCONCLUSIVE in verdicts else NOT_MEASURED


def _range_verdict(interval, low, high):
    """Is the mean inside [low, high]? Holds when the whole interval is, does not hold
    when the interval misses the range, else inconclusive."""
    if low <= interval["low"] and interval["high"] <= high:
        return HOLDS
    if interval["high"] < low or interval["low"] > high:
        return DOES_NOT_HOLD
    return INCONCLUSIVE


def _seed_interval(values, confidence):
    """Student-t interval of the mean of per-seed values (None under two seeds)."""
    return paired_interval(values, np.zeros(len(values)), confidence)


def check_truncation(slopes, thresholds):
    """C1T from truncation_transformer_slopes.csv."""
    tolerance = thresholds["slope_tolerance"]
    test = (
        f"Every fitted slope (each norm, seed and order K) within ±{tolerance:g} of K+1. "
        "Holds if all are; does not hold if one is outside; not measured without slopes."
    )
    if slopes is None or slopes.empty:
        return _result(test, NOT_MEASURED, "this run has no truncation_transformer_slopes.csv")
    fitted = slopes.dropna(subset=["slope"])
    if len(fitted) < len(slopes):
        missing = slopes[slopes["slope"].isna()][["norm", "seed", "order"]]
        return _result(
            test,
            NOT_MEASURED,
            f"{len(missing)} slope(s) not fitted (fewer than 3 points above round-off): "
            + ", ".join(f"{r.norm} seed {r.seed} K={r.order}" for r in missing.itertuples()),
        )
    deviation = (fitted["slope"] - (fitted["order"] + 1)).abs()
    groups = fitted.assign(deviation=deviation).groupby(["norm", "order"])
    per_group = [
        {
            "norm": norm,
            "order": int(order),
            "slope_mean": float(g["slope"].mean()),
            "slope_min": float(g["slope"].min()),
            "slope_max": float(g["slope"].max()),
            "max_deviation": float(g["deviation"].max()),
        }
        for (norm, order), g in groups
    ]
    verdict = HOLDS if deviation.max() <= tolerance else DOES_NOT_HOLD
    summary = "; ".join(
        f"{r['norm']} K={r['order']}: {r['slope_min']:.3f}–{r['slope_max']:.3f}" for r in per_group
    )
    return _result(test, verdict, summary, {"slopes": per_group})


def _per_seed_slopes(rows, x, y, log_x):
    """Per seed, the slope of ``y`` vs ``x`` (log-log when ``log_x``, else linear)."""
    slopes = []
    for _, seed_rows in rows.groupby("seed"):
        if seed_rows[x].nunique() < 3:
            continue
        if log_x:
            slopes.append(loglog_slope(seed_rows[x], seed_rows[y]))
        else:
            slopes.append(float(np.polyfit(seed_rows[x], seed_rows[y], 1)[0]))
    return slopes


def check_init_norms(norms, thresholds):
    """C2T from init_norms_transformer.csv."""
    growth = thresholds["min_log10_growth_per_module"]
    low, high = thresholds["pre_ln_exponent"]
    min_modules = thresholds["pre_ln_min_modules"]
    bound = thresholds["max_bounded_rel_norm"]
    confidence = thresholds["confidence"]
    test = (
        f"Norm-free λ=1: per-seed slope of log10 ‖x_n‖/‖x_0‖ against n ≥ {growth:g} decades "
        f"per module ({confidence:.0%} interval above it). Pre-LN λ=1: per-seed log-log "
        f"slope of ‖x_n‖/‖x_0‖ against n over n ≥ {min_modules}, interval inside "
        f"[{low:g}, {high:g}] (a power of n near ½). λ=1/√n and λ=1/n, both norms: largest "
        f"‖x_n‖/‖x_0‖ over seeds at the largest depth < {bound:g}. Each part needs 3 depths "
        "and 2 seeds; holds if all hold."
    )
    if norms is None or norms.empty:
        return _result(test, NOT_MEASURED, "this run has no init_norms_transformer.csv")
    measured, verdicts, summary = {}, [], []
    free = norms[(norms["norm"] == "none") & (norms["scaling"] == "one")]
    interval = _seed_interval(
        _per_seed_slopes(free, "modules", "log10_rel_norm", False), confidence
    )
    if interval is None:
        verdicts.append(NOT_MEASURED)
        summary.append("norm-free λ=1: too few depths or seeds")
    else:
        verdicts.append(_range_verdict(interval, growth, math.inf))
        measured["norm_free_log10_growth_per_module"] = {
            k: interval[k] for k in ("mean", "low", "high")
        }
        summary.append(
            f"norm-free λ=1 gains {interval['mean']:.3g} decades per module "
            f"[{interval['low']:.3g}, {interval['high']:.3g}]"
        )
    pre = norms[(norms["norm"] == "pre_ln") & (norms["scaling"] == "one")]
    pre = pre[pre["modules"] >= min_modules]
    interval = _seed_interval(_per_seed_slopes(pre, "modules", "rel_norm", True), confidence)
    if interval is None:
        verdicts.append(NOT_MEASURED)
        summary.append(f"pre-LN λ=1: too few depths ≥ {min_modules} or seeds")
    else:
        verdicts.append(_range_verdict(interval, low, high))
        measured["pre_ln_exponent"] = {k: interval[k] for k in ("mean", "low", "high")}
        summary.append(
            f"pre-LN λ=1 grows like n^{interval['mean']:.3f} "
            f"[{interval['low']:.3f}, {interval['high']:.3f}]"
        )
    largest = norms["modules"].max()
    at_largest = norms[norms["modules"] == largest]
    worst = {}
    for scaling in ("inv_sqrt", "inv"):
        values = at_largest.loc[at_largest["scaling"] == scaling, "rel_norm"]
        if values.empty:
            verdicts.append(NOT_MEASURED)
            continue
        worst[scaling] = float(values.max())
        verdicts.append(HOLDS if worst[scaling] < bound else DOES_NOT_HOLD)
    measured["largest_modules"] = int(largest)
    measured["max_rel_norm_at_largest"] = worst
    summary.append(
        f"largest ‖x_n‖/‖x_0‖ at n={largest}: "
        + ", ".join(f"{s} {v:.3g}" for s, v in worst.items())
    )
    return _result(test, _combined(verdicts), "; ".join(summary), measured)


def check_radius(radius, thresholds):
    """C6 from radius_transformer.csv: the ratio-test estimate at the study's order."""
    low, high = thresholds["radius_sqrt_n"]
    confidence = thresholds["confidence"]
    test = (
        f"Per norm and depth: ρ̂·√n (ratio test at the study's order K) over seeds, "
        f"{confidence:.0%} interval inside [{low:g}, {high:g}]. Holds if it is at every depth "
        "of both norms; does not hold if one interval misses the range. The estimate's drift "
        "from order K − 2 is reported: a large drift means ρ̂ has not settled."
    )
    if radius is None or radius.empty:
        return _result(test, NOT_MEASURED, "this run has no radius_transformer.csv")
    rows, verdicts = [], []
    for (norm, modules), group in radius.groupby(["norm", "modules"]):
        scaled = (group["rho_ratio"] * math.sqrt(modules)).tolist()
        interval = _seed_interval(scaled, confidence)
        verdict = NOT_MEASURED if interval is None else _range_verdict(interval, low, high)
        verdicts.append(verdict)
        rows.append(
            {
                "norm": norm,
                "modules": int(modules),
                "rho_sqrt_n": float(np.mean(scaled)),
                "low": None if interval is None else interval["low"],
                "high": None if interval is None else interval["high"],
                "ratio_drift": float(group["rho_ratio_drift"].mean()),
                "rho_root_sqrt_n": float((group["rho_root"] * math.sqrt(modules)).mean()),
                "verdict": verdict,
            }
        )
    summary = "; ".join(
        f"{r['norm']} n={r['modules']}: ρ̂√n {r['rho_sqrt_n']:.2f} "
        f"[{_text(r['low'])}, {_text(r['high'])}] (drift {r['ratio_drift']:+.0%}; root "
        f"test {r['rho_root_sqrt_n']:.2f})"
        for r in rows
    )
    order = int(radius["order"].iloc[0])
    return _result(test, _combined(verdicts), summary, {"order": order, "rows": rows})


def _text(value):
    return "n/a" if value is None else f"{value:.2f}"


def check_recall_order(truncated, manifests, thresholds):
    """C7 from truncated_accuracy.csv (``taylor_test_acc``) of the transformer runs at
    λ = 1 (scalings one and bn); ``manifests`` the grid's data-set manifests (their
    ``n_test``: the binomial error of an accuracy)."""
    max_first = thresholds["max_order1_acc"]
    min_full = thresholds["min_full_acc"]
    confidence = thresholds["confidence"]
    test = (
        f"Trained transformer runs at λ=1 (one, bn) whose full test accuracy is ≥ {min_full:g}: "
        f"the order-1 Taylor truncation's accuracy (binomial {confidence:.0%} interval) "
        f"≤ {max_first:g}. Holds if every such run's interval lies below it; does not hold "
        "if one lies above; not measured without such a run."
    )
    if truncated is None or truncated.empty or "taylor_test_acc" not in truncated:
        return _result(test, NOT_MEASURED, "this run has no trained transformer runs")
    rows = truncated[
        (truncated["arch"] == "transformer")
        & truncated["scaling"].isin(["one", "bn"])
        & (truncated["order"] == 1)
        & (truncated["full_test_acc"] >= min_full)
    ]
    if rows.empty:
        return _result(test, NOT_MEASURED, f"no λ=1 transformer run reached {min_full:g}")
    n_test = {m["dataset"]: m["n_test"] for m in manifests or []}
    z = _normal_quantile(confidence)
    verdicts, found = [], []
    for row in rows.itertuples():
        variance = max(row.taylor_test_acc * (1 - row.taylor_test_acc), 1e-12)
        half = z * math.sqrt(variance / n_test[row.dataset])
        interval = {"low": row.taylor_test_acc - half, "high": row.taylor_test_acc + half}
        verdict = _range_verdict(interval, -math.inf, max_first)
        verdicts.append(verdict)
        found.append(
            {
                "run_id": row.run_id,
                "order1_acc": row.taylor_test_acc,
                "half_width": half,
                "full_acc": row.full_test_acc,
            }
        )
    summary = "; ".join(
        f"{r['run_id']}: order 1 {r['order1_acc']:.2f}±{r['half_width']:.2f} vs full "
        f"{r['full_acc']:.2f}"
        for r in found
    )
    return _result(test, _combined(verdicts), summary, {"runs": found})


def _normal_quantile(confidence):
    from scipy import stats

    return float(stats.norm.ppf((1 + confidence) / 2))
