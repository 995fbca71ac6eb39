"""The claims check: does this run's data support claims C1-C5 of docs/science.md §3?

Each ``check_cN`` takes the result tables a claim is about (DataFrames or dicts read from
the files of docs/file-contracts.md, ``None`` when this config does not produce them) and
the config's ``claims.CN`` thresholds, and returns a ``ClaimCheck``: the statement, the
test applied written out with its thresholds, the measured figures, and a verdict.

Verdicts of C1-C4, which are statements: ``holds``, ``does not hold``, ``inconclusive``
(a comparison whose interval straddles its threshold: the difference is inside the seed
and test-set noise), or ``not measured`` when the data a test needs are absent (a scaling,
enough depths or seeds, a result file, a run that did not diverge), with the reason in
the summary. C5 is a question, not a statement: it is ``measured`` when the run has the
numbers that answer it, else ``not measured``; the answer is in the measured figures.
Verdicts are only ever computed here, from the data.
"""

import json
import math
from dataclasses import asdict, dataclass, field
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd

from resdepth import aggregate
from resdepth.capacity import interior_maximum
from resdepth.fits import loglog_slope, paired_interval
from resdepth.scalings import is_fixed_lambda, scaling_label, scaling_name, scaling_sort_key

HOLDS = "holds"
DOES_NOT_HOLD = "does not hold"
INCONCLUSIVE = "inconclusive"
MEASURED = "measured"
NOT_MEASURED = "not measured"

#: Every verdict a check may return; C5 uses only the last two.
VERDICTS = (HOLDS, DOES_NOT_HOLD, INCONCLUSIVE, MEASURED, NOT_MEASURED)

#: The claims as docs/science.md §3 states them, shortened.
STATEMENTS = {
    "C1": "Expansion: the order-K truncation error of the residual expansion scales as "
    "λ^(K+1) as λ → 0 (log-log slope K+1; 3 for the paper's order 2).",
    "C2": "Explosion: at initialisation, without normalisation, the output norm grows "
    "exponentially in depth n for λ=1 and stays bounded for λ=1/√n and λ=1/n.",
    "C3": "Normalisation-free depth: unnormalised towers with λ=1/√n or λ=1/n train stably "
    "at large depth, λ=1 diverges or stalls, and λ=1/√n reaches a higher test accuracy "
    "than λ=1/n.",
    "C4": "Capacity control: the geometric complexity of the learned function is unimodal "
    "as a function of λ.",
    "C5": "Question: how large are the order-1, order-2 and higher-order contributions at "
    "initialisation and after training, and how accurate is a classifier that keeps only "
    "the orders ≤ K?",
}

#: The figure each verdict rests on, relative to results/claims.{md,html} (the plotting
#: rules draw them); both documents link it under the claim's heading when measured.
FIGURES = {
    "C1": "figures/expansion_truncation.png",
    "C2": "figures/init_norms.png",
    "C3": "figures/accuracy_vs_depth.png",
    "C4": "figures/capacity_gc_vs_lambda.png",
    "C5": "figures/expansion_truncated_accuracy.png",
}

#: What could turn each claim's verdict, in words (claims.md prints it under the test).
WHAT_WOULD_CHANGE = {
    "C1": "A smooth tower's fitted slope leaving the tolerance of K+1 (a fit range where "
    "round-off or the next order bends the line), or the share of ReLU inputs whose own "
    "slope is within it falling below min_share_per_input; no smooth activation in "
    "expansion.truncation.activations, or no ReLU input fitted, makes it not measured. "
    "The ReLU batch slope cannot change it.",
    "C2": "A λ=1 growth rate below the threshold, or a λ=1/√n or λ=1/n norm at the "
    "largest depth at or above the bound; with fewer common depths than min_depths it is "
    "not measured.",
    "C3": "Stability: a λ=1/√n or λ=1/n seed diverging or ending below the trained "
    "threshold at any depth, or λ=1 training at the largest depth. Gap: more seeds (a "
    "narrower seed interval) or a larger test set (a smaller binomial error) can turn an "
    "inconclusive gap into holds or does not hold.",
    "C4": "A run of the sweep diverging makes it not measured (capacity.grad_clip keeps "
    "large-λ runs finite); more seeds narrow the intervals and can turn inconclusive into "
    "either verdict; a wider λ range can move the peak or the ends.",
    "C5": "Nothing: it is reported, not judged; absent tables make it not measured.",
}

#: The three unnormalised scalings C2 and C3 compare.
UNNORMALISED = ("one", "inv_sqrt", "inv")


@dataclass
class ClaimCheck:
    """One claim's verdict and the evidence for it."""

    id: str
    statement: str
    test: str
    verdict: str
    summary: str  # the measured figures, in one line
    measured: dict = field(default_factory=dict)


def _check(claim, test, verdict, summary, measured=None):
    if verdict not in VERDICTS:
        raise ValueError(f"{claim}: unknown verdict {verdict!r}")
    return ClaimCheck(claim, STATEMENTS[claim], test, verdict, summary, measured or {})


def _scaling_names(frame):
    """The canonical name of each row's scaling (a fixed λ as ``{:g}`` text)."""
    return frame["scaling"].map(scaling_name)


def _missing_text(what):
    """The summary of a claim that cannot be tested: what is missing."""
    return f"this run has {what}"


def _plain(value):
    """A numpy scalar as the Python value JSON can hold."""
    return value.item() if isinstance(value, np.generic) else value


# --- C1 -----------------------------------------------------------------------------


def _c1_smooth(taylor, orders, tolerance):
    """The smooth-module control: (verdict, seed-mean batch slopes per activation, text)."""
    smooth = sorted(set(taylor["activation"]) - {"relu"})
    if not smooth:
        return NOT_MEASURED, {}, "no smooth-module control (expansion.truncation.activations)"
    mean = taylor[taylor["activation"].isin(smooth)].groupby(["activation", "order"])["slope"]
    mean = mean.mean()
    slopes = {a: {str(k): _float(mean.get((a, k))) for k in orders} for a in smooth}
    if any(v is None for per_order in slopes.values() for v in per_order.values()):
        return NOT_MEASURED, slopes, "a smooth tower without a fitted slope for every K"
    within = all(abs(v - (int(k) + 1)) <= tolerance for s in slopes.values() for k, v in s.items())
    text = "; ".join(
        f"{a} towers, batch slope " + ", ".join(f"K={k} {v:.2f}" for k, v in s.items())
        for a, s in slopes.items()
    )
    return (HOLDS if within else DOES_NOT_HOLD), slopes, text


def _c1_per_input(per_input, orders, tolerance, min_share):
    """ReLU towers per input: (verdict, figures, text)."""
    rows = None if per_input is None else per_input[per_input["activation"] == "relu"]
    if rows is None or rows.empty:
        return NOT_MEASURED, {}, "no per-input slopes of ReLU towers"
    figures = {}
    for k in orders:
        fitted = rows.loc[(rows["order"] == k), "slope"].dropna()
        within = (fitted - (k + 1)).abs() <= tolerance
        figures[str(k)] = {
            "n_inputs": int((rows["order"] == k).sum()),
            "n_fitted": len(fitted),
            "share_within_tolerance": float(within.mean()) if len(fitted) else None,
            "median_slope": float(fitted.median()) if len(fitted) else None,
        }
    if any(f["share_within_tolerance"] is None for f in figures.values()):
        return NOT_MEASURED, figures, "an order K with no input fitted below its first mask change"
    holds = all(f["share_within_tolerance"] >= min_share for f in figures.values())
    text = "ReLU towers per input, below each input's first mask change: " + ", ".join(
        f"K={k} {f['share_within_tolerance']:.0%} of {f['n_fitted']} fitted inputs (of "
        f"{f['n_inputs']}) within ±{tolerance:g} of {int(k) + 1} (median "
        f"{f['median_slope']:.2f})"
        for k, f in figures.items()
    )
    return (HOLDS if holds else DOES_NOT_HOLD), figures, text


def _c1_relu_batch(taylor, truncation, orders):
    """The ReLU batch exponents and their mechanism (reported, not judged): (figures, text)."""
    relu = taylor[taylor["activation"] == "relu"]
    if relu.empty:
        return {}, ""
    exponents = relu.groupby("order")["slope"].mean()
    figures = {"batch_slopes": {str(k): _float(exponents.get(k)) for k in orders}}
    text = "ReLU towers, whole batch: slope " + ", ".join(
        f"K={k} {v:.2f}" for k, v in figures["batch_slopes"].items() if v is not None
    )
    if truncation is not None and not truncation.empty:
        fit_max = float(relu["fit_lambda_max"].max())
        rows = truncation[
            (truncation["activation"] == "relu")
            & (truncation["decomposition"] == "taylor")
            & (truncation["lambda"] <= fit_max)
        ]
        changes = rows.groupby("lambda")["mask_change_fraction"].mean()
        growth = loglog_slope(changes.index, changes.to_numpy())
        figures["mask_change_fraction_slope"] = _float(growth)
        figures["mask_change_fraction_at_fit_max"] = _float(changes.iloc[-1])
        text += (
            f", because the fraction of ReLU units off their λ=0 mask grows as λ^"
            f"{_format_optional(_float(growth))} ({_format_optional(_float(changes.iloc[-1]))}"
            f" at λ={fit_max:g}) and each such unit adds an O(λ²) piece no Taylor order "
            "removes (reported, not judged)"
        )
    return figures, text


def check_c1(slopes, per_input, truncation, thresholds):
    """C1 from expansion/truncation{,_slopes,_per_input}.csv: the theorem on smooth towers
    (batch slopes) and on ReLU towers input by input below each input's first mask
    change; the ReLU batch exponent with its mechanism is reported."""
    orders = sorted(thresholds["orders"])
    tolerance, min_share = thresholds["slope_tolerance"], thresholds["min_share_per_input"]
    test = (
        f"Two tests of the Taylor expansion at λ=0 on fresh towers, for every K in "
        f"{', '.join(map(str, orders))}. Smooth control (activations other than ReLU, where "
        "the tower is analytic in λ): the log-log slope of the batch truncation error vs λ, "
        f"fitted at small λ, mean over seeds, within ±{tolerance:g} of K+1. ReLU per input: "
        "each input's slope fitted over the λ below its first mask change (measured on the "
        "λ grid) and above round-off, at least 3 points; the share of fitted inputs within "
        f"±{tolerance:g} of K+1 at least {min_share:g}. Holds if both hold; does not hold if "
        "either does not. The ReLU slope of the whole batch is reported with its mechanism "
        "(mask changes), not judged: the theorem assumes no mask changes."
    )
    if slopes is None or slopes.empty:
        return _check("C1", test, NOT_MEASURED, _missing_text("no truncation slopes"))
    taylor = slopes[slopes["decomposition"] == "taylor"]
    smooth, smooth_slopes, smooth_text = _c1_smooth(taylor, orders, tolerance)
    inputs, input_figures, input_text = _c1_per_input(per_input, orders, tolerance, min_share)
    batch_figures, batch_text = _c1_relu_batch(taylor, truncation, orders)
    measured = {
        "smooth_control": {"verdict": smooth, "slopes": smooth_slopes},
        "relu_per_input": {"verdict": inputs, "orders": input_figures},
        "relu_batch": batch_figures,
        "ideal": {str(k): k + 1 for k in orders},
        "depth": sorted(int(d) for d in taylor["depth"].unique()),
        "n_seeds": int(taylor["seed"].nunique()),
        "fit_lambda_range": [
            float(taylor["fit_lambda_min"].min()),
            float(taylor["fit_lambda_max"].max()),
        ],
    }
    summary = f"smooth control ({smooth}): {smooth_text}; per input ({inputs}): {input_text}"
    if batch_text:
        summary += f"; {batch_text}"
    return _check("C1", test, _combined([smooth, inputs]), summary, measured)


# --- C2 -----------------------------------------------------------------------------


def check_c2(norms, thresholds):
    """C2 from init_norms.csv: λ=1's log10 norm grows linearly with depth at a rate above
    the threshold; λ=1/√n and 1/n stay below the bound at the largest depth."""
    min_depths = thresholds["min_depths"]
    min_growth = thresholds["min_log10_growth_per_module"]
    bound = thresholds["max_bounded_rel_norm"]
    test = (
        f"Needs λ=1, λ=1/√n and λ=1/n at ≥ {min_depths} common depths. λ=1: slope of the "
        f"seed-mean log10 ‖x_n‖/‖x_0‖ against n (a straight line means exponential growth) "
        f"≥ {min_growth:g} decades per module. λ=1/√n and λ=1/n: largest ‖x_n‖/‖x_0‖ over "
        f"seeds at the largest depth < {bound:g}. Holds if all three hold."
    )
    if norms is None or norms.empty:
        return _check("C2", test, NOT_MEASURED, _missing_text("no init_norms.csv"))
    norms = norms.assign(scaling=_scaling_names(norms))
    depth_sets = [set(norms.loc[norms["scaling"] == s, "depth"]) for s in UNNORMALISED]
    depths = sorted(set.intersection(*depth_sets))
    if len(depths) < min_depths:
        text = _missing_text(
            f"λ=1, λ=1/√n and λ=1/n at {len(depths)} common depth(s), {min_depths} needed"
        )
        return _check("C2", test, NOT_MEASURED, text)
    norms = norms[norms["depth"].isin(depths)]
    one = norms[norms["scaling"] == "one"].groupby("depth")["log10_rel_norm"].mean()
    slope, intercept = np.polyfit(one.index.to_numpy(float), one.to_numpy(float), 1)
    fitted = slope * one.index.to_numpy(float) + intercept
    residual = ((one.to_numpy() - fitted) ** 2).sum()
    spread = ((one.to_numpy() - one.mean()) ** 2).sum()
    largest = depths[-1]
    at_largest = norms[norms["depth"] == largest]
    worst = {
        s: float(at_largest.loc[at_largest["scaling"] == s, "log10_rel_norm"].max())
        for s in ("inv_sqrt", "inv")
    }
    measured = {
        "depths": [int(d) for d in depths],
        "largest_depth": int(largest),
        "one_log10_growth_per_module": float(slope),
        "one_fit_r2": float(1 - residual / spread) if spread > 0 else None,
        "one_log10_rel_norm_at_largest_depth": float(one[largest]),
        "max_log10_rel_norm_at_largest_depth": worst,
    }
    grows = slope >= min_growth
    bounded = all(value < math.log10(bound) for value in worst.values())
    summary = (
        f"λ=1 gains {slope:.3g} decades per module (‖x_n‖/‖x_0‖ ≈ 10^{one[largest]:.0f} at "
        f"n={largest}); largest ‖x_n‖/‖x_0‖ at n={largest}: "
        f"λ=1/√n {10 ** worst['inv_sqrt']:.3g}, λ=1/n {10 ** worst['inv']:.3g}"
    )
    return _check("C2", test, HOLDS if grows and bounded else DOES_NOT_HOLD, summary, measured)


# --- C3 -----------------------------------------------------------------------------


def _interval_verdict(interval):
    """A claim "A > B" on the interval of A − B: holds when it lies above 0, does not hold
    when it lies at or below 0 (A is not above B beyond the noise), else inconclusive."""
    if interval["low"] > 0:
        return HOLDS
    if interval["high"] <= 0:
        return DOES_NOT_HOLD
    return INCONCLUSIVE


def _combined(verdicts):
    """One verdict from the verdicts of its parts: any part that does not hold decides;
    all hold: holds; otherwise inconclusive if a part is, else (a part, or every part,
    not measured) not measured."""
    verdicts = list(verdicts)
    if DOES_NOT_HOLD in verdicts:
        return DOES_NOT_HOLD
    if verdicts and all(v == HOLDS for v in verdicts):
        return HOLDS
    if INCONCLUSIVE in verdicts:
        return INCONCLUSIVE
    return NOT_MEASURED


def _c3_depth(cells, n_test, thresholds):
    """C3's figures at one depth of one settings group: ``cells`` are its runs."""
    outcome = {}
    for scaling in (*UNNORMALISED, "bn"):
        runs = cells[cells["scaling"] == scaling]
        ok = runs[runs["status"] == "ok"]
        outcome[scaling] = {
            "n_seeds": len(runs),
            "n_diverged": int((runs["status"] != "ok").sum()),
            "test_acc": float(ok["test_acc"].mean()) if len(ok) else None,
        }

    def trained(s):
        acc = outcome[s]["test_acc"]
        return outcome[s]["n_diverged"] == 0 and acc >= thresholds["trained_above"]

    one = outcome["one"]
    result = {
        "depth": int(cells["depth"].iloc[0]),
        "runs": {s: v for s, v in outcome.items() if v["n_seeds"]},
        "one_diverged_or_stalled": bool(
            one["n_diverged"] > 0 or one["test_acc"] < thresholds["stalled_below"]
        ),
        "inv_sqrt_and_inv_trained": bool(trained("inv_sqrt") and trained("inv")),
        "gap": None,
        "gap_verdict": NOT_MEASURED,
    }
    if result["inv_sqrt_and_inv_trained"]:
        accs = cells.pivot_table(index="seed", columns="scaling", values="test_acc")
        paired = accs[["inv_sqrt", "inv"]].dropna()
        binomial = (paired * (1 - paired) / n_test).sum(axis=1)  # Var of each seed's gap
        gap = paired_interval(
            paired["inv_sqrt"] - paired["inv"], binomial, thresholds["confidence"]
        )
        result["gap"] = gap
        result["gap_verdict"] = NOT_MEASURED if gap is None else _interval_verdict(gap)
    return result


def _c3_group(runs, n_test, thresholds):
    """C3 on the runs of one combination of settings; None without a depth at which all
    three unnormalised scalings have runs."""
    common = set.intersection(*(set(runs.loc[runs["scaling"] == s, "depth"]) for s in UNNORMALISED))
    if not common:
        return None
    depths = [_c3_depth(runs[runs["depth"] == d], n_test, thresholds) for d in sorted(common)]
    largest = depths[-1]
    stable = largest["one_diverged_or_stalled"] and all(
        d["inv_sqrt_and_inv_trained"] for d in depths
    )
    gaps = [d["gap_verdict"] for d in depths if d["inv_sqrt_and_inv_trained"]]
    return {
        **{s: _plain(runs.iloc[0][s]) for s in aggregate.SETTINGS},
        "largest_depth": largest["depth"],
        "depths": depths,
        "stability": HOLDS if stable else DOES_NOT_HOLD,
        "gap": _combined(gaps),
        "verdict": _combined([HOLDS if stable else DOES_NOT_HOLD, *gaps]),
    }


def _percent(value):
    return "diverged" if value is None else f"{100 * value:.1f}%"


def _c3_depth_text(d):
    """One depth of C3 in words: accuracies, divergences and the gap with its interval."""
    cells = ", ".join(
        f"{scaling_label(s)} {_percent(r['test_acc'])}"
        + (f" ({r['n_diverged']}/{r['n_seeds']} diverged)" if r["n_diverged"] else "")
        for s, r in d["runs"].items()
    )
    text = f"n={d['depth']}: {cells}"
    gap = d["gap"]
    if gap is not None:
        text += (
            f"; 1/√n − 1/n {100 * gap['mean']:+.1f} points, "
            f"{100 * gap['confidence']:g}% interval [{100 * gap['low']:+.1f}, "
            f"{100 * gap['high']:+.1f}] ({d['gap_verdict']})"
        )
    elif d["inv_sqrt_and_inv_trained"]:
        text += "; gap not measured (under 2 seeds with both trained)"
    return text


def check_c3(runs, manifests, thresholds):
    """C3 from runs.csv (per-seed accuracies) and the data manifests (test-set sizes), at
    every depth all three unnormalised scalings share, separately for each combination of
    the other grid settings."""
    confidence = thresholds["confidence"]
    test = (
        "Per combination of the other grid settings, at every depth where λ=1, λ=1/√n and "
        "λ=1/n all have runs. Stability: λ=1/√n and λ=1/n trained at every such depth (no "
        f"seed diverged, mean test accuracy ≥ {thresholds['trained_above']:g}) and λ=1 "
        "diverged (any seed) or stalled (mean test accuracy < "
        f"{thresholds['stalled_below']:g}) at the largest; holds or does not hold. Gap, at "
        "every depth where λ=1/√n and λ=1/n trained: acc(λ=1/√n) − acc(λ=1/n) paired by "
        f"seed, with a {confidence:.0%} interval whose half-width is the larger of the "
        "Student-t interval over seeds and the test-set binomial error of the two "
        "accuracies; holds if the interval lies above 0, does not hold if it lies at or "
        "below 0, else inconclusive. C3 holds if stability and every gap hold; does not "
        "hold if either part does not hold anywhere; else inconclusive. More seeds narrow "
        "the intervals and can turn an inconclusive gap into either verdict. BatchNorm is "
        "reported as the reference."
    )
    if runs is None or runs.empty:
        return _check("C3", test, NOT_MEASURED, _missing_text("no runs table"))
    if not (runs["status"] == "ok").any():
        text = _missing_text(f"no trained run (all {len(runs)} diverged)")
        return _check("C3", test, NOT_MEASURED, text)
    sizes = {m["dataset"]: m["n_test"] for m in manifests or []}
    missing = sorted(set(runs["dataset"]) - set(sizes))
    if missing:
        raise ValueError(f"no data manifest (test-set size) for dataset(s) {', '.join(missing)}")
    runs = runs.assign(scaling=_scaling_names(runs))
    groups = [
        _c3_group(group, sizes[group["dataset"].iloc[0]], thresholds)
        for _, group in runs.groupby(list(aggregate.SETTINGS))
    ]
    groups = [g for g in groups if g is not None]
    if not groups:
        text = _missing_text("no depth where λ=1, λ=1/√n and λ=1/n all have runs")
        return _check("C3", test, NOT_MEASURED, text)
    parts = [
        f"{g['dataset']} (stability {g['stability']}, gap {g['gap']}): "
        + "; ".join(_c3_depth_text(d) for d in g["depths"])
        for g in groups
    ]
    verdict = _combined(g["verdict"] for g in groups)
    return _check("C3", test, verdict, " | ".join(parts), {"groups": groups})


# --- C4 -----------------------------------------------------------------------------


def check_c4(sweep, thresholds):
    """C4 from capacity/gc_vs_lambda.csv: does the seed-mean GC(λ) curve have an interior
    maximum above both ends by more than the seed noise?"""
    metric, confidence = thresholds["metric"], thresholds["confidence"]
    test = (
        f"Over the fixed-λ runs of the λ sweep, every one finished (a diverged run truncates "
        f"the curve: not measured) with ≥ 2 seeds at each of ≥ 3 λ: the interior λ with the "
        f"highest seed-mean log10 {metric}, and the differences of its log10 {metric} from "
        f"that at the smallest and at the largest λ, paired by seed, each with a "
        f"{confidence:.0%} interval (half-width: the larger of the Student-t interval over "
        "seeds and GC's own standard error). Holds (unimodal with an interior peak) if both "
        "intervals lie above 0; does not hold if either lies at or below 0 (an end is as "
        "high as any interior point: monotone, or flat); else inconclusive. More seeds "
        "narrow the intervals; a sweep that trains past the stability limit (e.g. "
        "capacity.grad_clip) turns not measured into a verdict."
    )
    if sweep is None or sweep.empty:
        return _check("C4", test, NOT_MEASURED, _missing_text("no λ sweep"))
    fixed = sweep[sweep["scaling"].map(is_fixed_lambda)]
    finished = fixed[fixed["status"] == "ok"]
    if finished.empty:
        text = _missing_text(f"no trained run in the λ sweep (all {len(fixed)} diverged)")
        return _check("C4", test, NOT_MEASURED, text)
    diverged = fixed[fixed["status"] != "ok"]
    if len(diverged):
        lambdas = ", ".join(f"{v:.3g}" for v in sorted(diverged["lambda"].unique()))
        text = (
            f"divergence truncates the sweep: {len(diverged)} of {len(fixed)} runs diverged, "
            f"at λ = {lambdas}, so GC(λ) is not measured there"
        )
        measured = {"diverged_lambdas": sorted(float(v) for v in diverged["lambda"].unique())}
        return _check("C4", test, NOT_MEASURED, text, measured)
    result = interior_maximum(finished, metric, confidence)
    if "reason" in result:
        return _check("C4", test, NOT_MEASURED, _missing_text(result["reason"]), result)
    ends = [result["minus_smallest"], result["minus_largest"]]
    verdict = _combined(_interval_verdict(i) for i in ends)
    clips = sorted(finished["grad_clip"].dropna().unique()) if "grad_clip" in finished else []
    clipped = f", gradient norm clipped at {', '.join(f'{c:g}' for c in clips)}" if clips else ""
    curve = ", ".join(
        f"{lam:.3g}: {value:.2f}"
        for lam, value in zip(result["lambdas"], result["mean_log10"], strict=True)
    )
    summary = (
        f"{metric} over λ ({len(result['seeds'])} seeds{clipped}), seed-mean log10 "
        f"{metric} at λ = {curve}; highest interior point λ = "
        f"{result['interior_argmax_lambda']:.3g}; its log10 {metric} minus the smallest λ's "
        + ", minus the largest λ's ".join(
            f"{i['mean']:+.3f} [{i['low']:+.3f}, {i['high']:+.3f}]" for i in ends
        )
        + f" ({confidence:.0%} intervals)"
    )
    return _check("C4", test, verdict, summary, result)


# --- C5 -----------------------------------------------------------------------------


def _c5_rows(orders, truncated, keep_orders):
    """Per (scaling, depth, stage), mean over seeds: ‖P_1‖, ‖P_2‖, the largest ‖P_k‖ with
    k ≥ 3 (relative to ‖x_n − x_0‖), and for trained networks the accuracy with orders
    ≤ K kept, relative to the full network's."""
    paths = orders[(orders["decomposition"] == "path") & (orders["order"] >= 1)]
    keys = ["scaling", "depth", "stage"]
    paths = paths.sort_values(
        keys, key=lambda c: c.map(scaling_sort_key) if c.name == "scaling" else c
    )
    rows = []
    for (scaling, depth, stage), group in paths.groupby(keys, sort=False):
        per_order = group.groupby("order")["rel_norm"].mean()
        higher = per_order[per_order.index >= 3].dropna()
        row = {
            "scaling": scaling,
            "depth": int(depth),
            "stage": stage,
            "order_1": _float(per_order.get(1)),
            "order_2": _float(per_order.get(2)),
            "largest_higher_order": _float(higher.max()) if len(higher) else None,
        }
        if stage == "trained":
            runs = truncated[(truncated["scaling"] == scaling) & (truncated["depth"] == depth)]
            runs = runs.dropna(subset=["test_acc", "full_test_acc"])
            for k in keep_orders:
                kept = runs[runs["order"] == k]
                ratio = (kept["test_acc"] / kept["full_test_acc"]).mean() if len(kept) else None
                row[f"accuracy_ratio_K{k}"] = _float(ratio)
        rows.append(row)
    return rows


def _float(value):
    """A JSON-safe float: None for missing, NaN or ±inf (e.g. a ratio to a zero accuracy)."""
    if value is None or pd.isna(value) or not math.isfinite(value):
        return None
    return float(value)


def check_c5(orders, truncated, thresholds):
    """C5 from expansion/orders.csv and expansion/truncated_accuracy.csv: the per-order
    contributions and truncated-ensemble accuracy, reported, not judged."""
    keep = sorted(thresholds["truncation_orders"])
    test = (
        "Reported, not judged: per scaling, depth and stage (init, trained), the seed-mean "
        "‖P_k‖/‖x_n − x_0‖ of the path decomposition for k = 1, 2 and the largest k ≥ 3; "
        "for trained networks, the test accuracy of the head on x_0 + Σ_{k≤K} P_k for "
        f"K = {', '.join(map(str, keep))}, as a fraction of the full network's. Verdict "
        "'measured' when both are present for at least one trained network."
    )
    if orders is None or truncated is None or orders.empty or truncated.empty:
        return _check("C5", test, NOT_MEASURED, _missing_text("no expansion tables"))
    orders = orders.assign(scaling=_scaling_names(orders))
    truncated = truncated.assign(scaling=_scaling_names(truncated))
    rows = _c5_rows(orders, truncated, keep)
    trained = [r for r in rows if r["stage"] == "trained" and r["order_1"] is not None]
    answered = [r for r in trained if r.get(f"accuracy_ratio_K{keep[0]}") is not None]
    if not answered:
        text = _missing_text("no trained network with per-order norms and truncated accuracy")
        return _check("C5", test, NOT_MEASURED, text)
    largest = max(r["depth"] for r in answered)
    parts = []
    for r in (r for r in answered if r["depth"] == largest):
        ratios = ", ".join(
            f"K={k} {_percent(r[f'accuracy_ratio_K{k}'])}"
            for k in keep
            if r.get(f"accuracy_ratio_K{k}") is not None
        )
        parts.append(
            f"{scaling_label(r['scaling'])}: ‖P_1‖ {r['order_1']:.2g}, ‖P_2‖ "
            f"{_format_optional(r['order_2'])}; accuracy kept {ratios}"
        )
    summary = f"trained, n={largest} (norms relative to ‖x_n − x_0‖): " + "; ".join(parts)
    return _check("C5", test, MEASURED, summary, {"rows": rows})


def _format_optional(value):
    return "n/a" if value is None else f"{value:.2g}"


# --- all claims, files ---------------------------------------------------------------


#: The result tables the checks read, by name (the ``claims`` rule's input names).
TABLE_NAMES = (
    "truncation",
    "truncation_slopes",
    "truncation_per_input",
    "init_norms",
    "runs",
    "data_manifests",
    "capacity_sweep",
    "orders",
    "truncated_accuracy",
)


def check_all(tables, thresholds):
    """Every claim's check. ``tables`` maps a name of TABLE_NAMES to its table, or to
    None (or no entry) when this config does not produce it."""
    return [
        check_c1(
            tables.get("truncation_slopes"),
            tables.get("truncation_per_input"),
            tables.get("truncation"),
            thresholds["C1"],
        ),
        check_c2(tables.get("init_norms"), thresholds["C2"]),
        check_c3(tables.get("runs"), tables.get("data_manifests"), thresholds["C3"]),
        check_c4(tables.get("capacity_sweep"), thresholds["C4"]),
        check_c5(tables.get("orders"), tables.get("truncated_accuracy"), thresholds["C5"]),
    ]


def read_tables(paths):
    """Read the result files the checks use; ``paths`` maps a table name to its path, a
    list of paths (read into a list) or None. CSV scalings stay text; JSON files are read
    as dicts."""

    def read(path):
        if Path(path).suffix == ".json":
            return json.loads(Path(path).read_text())
        return pd.read_csv(path, dtype={"scaling": str})

    tables = {}
    for name, path in paths.items():
        if path is None:
            tables[name] = None
        elif isinstance(path, list | tuple):
            tables[name] = [read(p) for p in path]
        else:
            tables[name] = read(path)
    return tables


def claims_json(checks, thresholds):
    """The checks as a JSON document (with the thresholds they used)."""
    document = {"claims": [asdict(c) for c in checks], "thresholds": thresholds}
    return json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


INTRODUCTION = (
    "Computed by the claims rule from this run's results, with the thresholds of the "
    "config section claims. Verdicts: holds, does not hold, inconclusive (the difference "
    "a claim is about lies inside the seed and test-set noise), not measured (the reason "
    "is given); C5 is a question, measured when this run answers it."
)


def _blocks(checks):
    """The claims document as blocks both writers render: ``("title", text)``,
    ``("heading", text)``, ``("figure", path)``, ``("paragraph", label, text)``,
    ``("table", header, rows)``."""
    blocks = [
        ("title", "Claims check"),
        ("paragraph", "", INTRODUCTION),
        ("table", ["claim", "verdict", "measured"], [[c.id, c.verdict, c.summary] for c in checks]),
    ]
    for c in checks:
        blocks += [
            ("heading", f"{c.id}: {c.verdict}"),
            *([("figure", FIGURES[c.id])] if c.verdict != NOT_MEASURED else []),
            ("paragraph", "", c.statement),
            ("paragraph", "Test.", c.test),
            ("paragraph", "What would change the verdict.", WHAT_WOULD_CHANGE[c.id]),
            (
                "paragraph",
                "Not measured:" if c.verdict == NOT_MEASURED else "Measured.",
                c.summary + ".",
            ),
        ]
        if c.measured.get("rows"):
            blocks.append(("table", *_rows_table(c.measured["rows"])))
    return blocks


def _rows_table(rows):
    """C5's per-(scaling, depth, stage) figures as (header, rows of text)."""
    header = list(dict.fromkeys(key for row in rows for key in row))

    def text(key, value):
        if value is None:
            return ""
        if key == "scaling":
            return scaling_label(value)
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    return header, [[text(key, row.get(key)) for key in header] for row in rows]


def claims_markdown(checks):
    """A table of verdicts, then one section per claim: statement, test, figures."""
    lines = []
    for kind, *content in _blocks(checks):
        if kind == "title":
            lines += [f"# {content[0]}", ""]
        elif kind == "heading":
            lines += [f"## {content[0]}", ""]
        elif kind == "figure":
            lines += [f"*Figure:* [{content[0]}]({content[0]})", ""]
        elif kind == "paragraph":
            label, text = content
            lines += [f"*{label}* {text}" if label else text, ""]
        else:
            header, rows = content
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "---|" * len(header))
            lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows]
            lines.append("")
    return "\n".join(lines)


#: Verdict colours of the HTML page (green, red, yellow, blue, grey).
_VERDICT_COLORS = {
    HOLDS: "#d4edda",
    DOES_NOT_HOLD: "#f8d7da",
    INCONCLUSIVE: "#fff3cd",
    MEASURED: "#d6e9f8",
    NOT_MEASURED: "#e9ecef",
}


def claims_html(checks):
    """The same document as a standalone HTML page (for the Snakemake report), each
    verdict cell coloured by its verdict."""
    parts = []
    for kind, *content in _blocks(checks):
        if kind == "title":
            parts.append(f"<h1>{escape(content[0])}</h1>")
        elif kind == "heading":
            parts.append(f"<h2>{escape(content[0])}</h2>")
        elif kind == "figure":
            path = escape(content[0])
            parts.append(f'<p><em>Figure:</em> <a href="{path}">{path}</a></p>')
        elif kind == "paragraph":
            label, text = content
            label = f"<em>{escape(label)}</em> " if label else ""
            parts.append(f"<p>{label}{escape(text)}</p>")
        else:
            header, rows = content
            parts.append("<table>")
            parts.append("<tr>" + "".join(f"<th>{escape(h)}</th>" for h in header) + "</tr>")
            for row in rows:
                cells = "".join(_html_cell(text) for text in row)
                parts.append(f"<tr>{cells}</tr>")
            parts.append("</table>")
    style = (
        "body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}"
        "table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8">'
        f"<title>Claims check</title><style>{style}</style></head>\n<body>\n"
        + "\n".join(parts)
        + "\n</body>\n</html>\n"
    )


def _html_cell(text):
    color = _VERDICT_COLORS.get(text)
    style = f' style="background:{color}"' if color else ""
    return f"<td{style}>{escape(text)}</td>"
