"""The claims check: does this run's data support claims C1-C5 of docs/science.md §3?

Each claim is one record of CLAIMS (a ``Claim``): its statement, the figure its verdict
rests on, what would change the verdict, the result tables its check reads (names of the
``claims`` rule's inputs) and the check. A check takes those tables (DataFrames, dicts or
arrays read by ``read_tables`` from the files of docs/file-contracts.md; None when this
config does not produce one) and the config's ``claims.<id>`` thresholds, and returns a
``Finding``: the test applied written out with its thresholds, the measured figures in
one line and as data, and a verdict.

Verdicts of statements: ``holds``, ``does not hold``, ``inconclusive`` (a comparison
whose interval straddles its threshold: the difference is inside the seed and test-set
noise; the finding then says the smallest effect the seeds could have decided and the
seeds a reference effect would need), or ``not measured`` when the data a test needs are
absent (a scaling, enough depths, seeds or stable λ, a result file), with the reason.
A question (C5) is ``measured`` when the run has the numbers that answer it, else ``not
measured``. Verdicts are only ever computed here, from the data.

Families are never mixed: ``check_all`` runs each check once per (dataset, arch) of the
claim's first table, and a claim's verdict combines the families that were measured
(each family's verdict and figures are kept in ``measured["families"]``).

Adding a claim (e.g. one about transformer towers): write ``check_cN(*tables,
thresholds) -> Finding`` for one family; append ``Claim("CN", ...)`` to CLAIMS naming the
tables it reads; add those tables as inputs of the ``claims`` rule
(workflow/rules/claims.smk, under the same names) and its thresholds under ``claims.CN``
in the configs and workflow/schemas/config.schema.yaml. claims.{json,md,html} pick it up.
"""

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from resdepth import aggregate, capacity, claims_transformer, formats
from resdepth.fits import (
    MIN_SLOPE_POINTS,
    loglog_slope,
    paired_interval,
    paired_test_variance,
    power_figures,
)
from resdepth.scalings import scaling_label, scaling_name, scaling_sort_key

HOLDS = "holds"
DOES_NOT_HOLD = "does not hold"
INCONCLUSIVE = "inconclusive"
MEASURED = "measured"
NOT_MEASURED = "not measured"

#: Every verdict a check may return; questions use only the last two.
VERDICTS = (HOLDS, DOES_NOT_HOLD, INCONCLUSIVE, MEASURED, NOT_MEASURED)

#: The three unnormalised scalings C2 and C3 compare.
UNNORMALISED = ("one", "inv_sqrt", "inv")

#: What a family is: a check never pools rows that differ in these.
FAMILY = ("dataset", "arch")


@dataclass
class Finding:
    """What one check found: the test in words, the verdict, the figures."""

    test: str
    verdict: str
    summary: str  # the measured figures, in one line
    measured: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {self.verdict!r}")


@dataclass
class ClaimCheck:
    """One claim's verdict and the evidence for it, as claims.json holds it."""

    id: str
    statement: str
    test: str
    verdict: str
    summary: str
    measured: dict = field(default_factory=dict)


def _missing_text(what):
    """The summary of a claim that cannot be tested: what is missing."""
    return f"this run has {what}"


def _plain(value):
    """A numpy scalar as the Python value JSON can hold."""
    return value.item() if isinstance(value, np.generic) else value


def _float(value):
    """A JSON-safe float: None for missing, NaN or ±inf (e.g. a ratio to a zero accuracy)."""
    if value is None or pd.isna(value) or not math.isfinite(value):
        return None
    return float(value)


def _format_optional(value):
    return "n/a" if value is None else f"{value:.2g}"


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


def _power_text(power, unit, reference, needed):
    """An inconclusive comparison's power in words."""
    if power["smallest_decided"] is None:
        return ""
    text = (
        f"with these seeds the test decides a true difference of {power['smallest_decided']:.3g}"
        f" {unit} or more {power['power']:.0%} of the time; one of {reference:g} {unit} "
    )
    return text + (
        f"needs {needed} seeds" if needed else f"needs more than {power['most_seeds']} seeds"
    )


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
        f"{a} towers, batch slope (mean over seeds) "
        + ", ".join(f"K={k} {v:.2f}" for k, v in s.items())
        for a, s in slopes.items()
    )
    return (HOLDS if within else DOES_NOT_HOLD), slopes, text


def _c1_exactness(per_input, orders, tolerance, min_share):
    """ReLU towers, each input below its first mask flip, where the tower is exactly the
    polynomial the expansion computes: (verdict, figures, text). Only a bug (in the
    expansion or the fit) can fail it; the share of inputs it could fit says how much of
    the batch it covers."""
    rows = None if per_input is None else per_input[per_input["activation"] == "relu"]
    if rows is None or rows.empty:
        return NOT_MEASURED, {}, "no per-input slopes of ReLU towers"
    figures = {}
    for k in orders:
        at_order = rows[rows["order"] == k]
        fitted = at_order["slope"].dropna()
        within = (fitted - (k + 1)).abs() <= tolerance
        figures[str(k)] = {
            "n_inputs": len(at_order),
            "n_fitted": len(fitted),
            "share_fitted": len(fitted) / len(at_order) if len(at_order) else None,
            "share_within_tolerance": float(within.mean()) if len(fitted) else None,
            "median_slope": float(fitted.median()) if len(fitted) else None,
        }
    if any(f["share_within_tolerance"] is None for f in figures.values()):
        return NOT_MEASURED, figures, "an order K with no input fitted below its first flip"
    holds = all(f["share_within_tolerance"] >= min_share for f in figures.values())
    text = "exactness below each input's first flip (ReLU): " + ", ".join(
        f"K={k} {f['share_within_tolerance']:.0%} of the {f['n_fitted']} inputs fitted "
        f"({f['share_fitted']:.0%} of {f['n_inputs']}) within ±{tolerance:g} of "
        f"{int(k) + 1} (median {f['median_slope']:.2f})"
        for k, f in figures.items()
    )
    return (HOLDS if holds else DOES_NOT_HOLD), figures, text


def _c1_relu_batch(taylor, truncation, orders):
    """The ReLU batch exponents and their mechanism (the headline; reported, not judged):
    (figures, text)."""
    relu = taylor[taylor["activation"] == "relu"]
    if relu.empty:
        return {}, ""
    exponents = relu.groupby("order")["slope"].mean()
    figures = {"batch_slopes": {str(k): _float(exponents.get(k)) for k in orders}}
    text = "ReLU towers, whole batch: truncation error ∝ λ^slope with slope " + ", ".join(
        f"K={k} {v:.2f} (theorem: {int(k) + 1})"
        for k, v in figures["batch_slopes"].items()
        if v is not None
    )
    if truncation is not None and not truncation.empty:
        fit_max = float(relu["fit_lambda_max"].max())
        rows = truncation[
            (truncation["activation"] == "relu")
            & (truncation["decomposition"] == "taylor")
            & (truncation["lambda"] <= fit_max)
        ]
        changes = rows.groupby("lambda")["mask_change_fraction"].mean()
        growth = _float(loglog_slope(changes.index, changes.to_numpy(), MIN_SLOPE_POINTS))
        figures["mask_change_fraction_slope"] = growth
        figures["mask_change_fraction_at_fit_max"] = _float(changes.iloc[-1])
        text += (
            f", because the share of ReLU units off their λ=0 mask grows as λ^"
            f"{_format_optional(growth)} ({_format_optional(_float(changes.iloc[-1]))} at "
            f"λ={fit_max:g}) and each flipped unit adds an O(λ²) piece no Taylor order "
            "removes (reported, not judged)"
        )
    return figures, text


def check_c1(slopes, per_input, truncation, thresholds):
    """C1 from expansion/truncation{,_slopes,_per_input}.csv: the headline is the ReLU
    batch exponent with its mechanism (reported); the verdict rests on the smooth control
    and on the exactness check of ReLU towers below each input's first flip."""
    orders = sorted(thresholds["orders"])
    tolerance, min_share = thresholds["slope_tolerance"], thresholds["min_share_per_input"]
    test = (
        f"For every K in {', '.join(map(str, orders))}, on fresh towers with every branch at "
        "one λ. Reported first, not judged: the log-log slope of the ReLU towers' whole-batch "
        "truncation error, with the mechanism that bends it (ReLU units flipping off their "
        "λ=0 mask; the theorem assumes none). Judged: (1) smooth control (activations other "
        "than ReLU, analytic in λ): the batch slope fitted at small λ, mean over seeds, "
        f"within ±{tolerance:g} of K+1; (2) an exactness check of the expansion on ReLU "
        "towers: each input's own slope over the λ below its first mask flip (where the "
        "tower is exactly the polynomial the expansion computes) and above round-off, at "
        f"least {MIN_SLOPE_POINTS} points, within ±{tolerance:g} of K+1 for at least "
        f"{min_share:g} of the inputs fitted. (2) can fail only through a bug in the "
        "expansion or the fit; the share of inputs fitted says how much of the batch it "
        "covers. Holds if (1) and (2) hold; does not hold if either does not."
    )
    if slopes is None or slopes.empty:
        return Finding(test, NOT_MEASURED, _missing_text("no truncation slopes"))
    taylor = slopes[slopes["decomposition"] == "taylor"]
    smooth, smooth_slopes, smooth_text = _c1_smooth(taylor, orders, tolerance)
    exact, exact_figures, exact_text = _c1_exactness(per_input, orders, tolerance, min_share)
    batch_figures, batch_text = _c1_relu_batch(taylor, truncation, orders)
    measured = {
        "relu_batch": batch_figures,
        "smooth_control": {"verdict": smooth, "slopes": smooth_slopes},
        "relu_exactness_below_first_flip": {"verdict": exact, "orders": exact_figures},
        "ideal": {str(k): k + 1 for k in orders},
        "depth": sorted(int(d) for d in taylor["depth"].unique()),
        "n_seeds": int(taylor["seed"].nunique()),
        "fit_lambda_range": [
            float(taylor["fit_lambda_min"].min()),
            float(taylor["fit_lambda_max"].max()),
        ],
    }
    parts = [batch_text] if batch_text else []
    parts += [f"smooth control ({smooth}): {smooth_text}", f"{exact_text} ({exact})"]
    return Finding(test, _combined([smooth, exact]), "; ".join(parts), measured)


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
        return Finding(test, NOT_MEASURED, _missing_text("no init_norms.csv"))
    norms = norms.assign(scaling=_scaling_names(norms))
    depth_sets = [set(norms.loc[norms["scaling"] == s, "depth"]) for s in UNNORMALISED]
    depths = sorted(set.intersection(*depth_sets))
    if len(depths) < min_depths:
        text = _missing_text(
            f"λ=1, λ=1/√n and λ=1/n at {len(depths)} common depth(s), {min_depths} needed"
        )
        return Finding(test, NOT_MEASURED, text)
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
    return Finding(test, HOLDS if grows and bounded else DOES_NOT_HOLD, summary, measured)


# --- C3 -----------------------------------------------------------------------------


def _scaling_names(frame):
    """The canonical name of each row's scaling (a fixed λ as ``{:g}`` text)."""
    return frame["scaling"].map(scaling_name)


def _percent(value):
    return "diverged" if value is None else f"{100 * value:.1f}%"


def _gap_variances(paired, n_test, test_correct):
    """Each seed's test-set variance of acc(λ=1/√n) − acc(λ=1/n), and how it was found:
    from the per-example outcomes of both runs (paired: both models score the same test
    images) when ``test_correct`` has them, else from the two accuracies as if
    independent binomials (an upper bound for positively correlated classifiers)."""
    ids = paired[["inv_sqrt_run", "inv_run"]].to_numpy()
    if test_correct is not None and all(i in test_correct for i in ids.flatten()):
        variances = [paired_test_variance(test_correct[a], test_correct[b]) for a, b in ids]
        return pd.Series(variances, index=paired.index), "paired per-example outcomes"
    independent = paired["inv_sqrt"] * (1 - paired["inv_sqrt"]) + paired["inv"] * (
        1 - paired["inv"]
    )
    return independent / n_test, "independent binomials (per-example outcomes not given)"


def _c3_depth(cells, n_test, test_correct, thresholds):
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
        pair = cells[cells["scaling"].isin(["inv_sqrt", "inv"])]
        accs = pair.pivot(index="seed", columns="scaling", values="test_acc")
        ids = pair.pivot(index="seed", columns="scaling", values="run_id")
        paired = accs.join(ids.add_suffix("_run")).dropna()
        variances, method = _gap_variances(paired, n_test, test_correct)
        gaps = paired["inv_sqrt"] - paired["inv"]
        gap = paired_interval(gaps, variances, thresholds["confidence"])
        result["gap"] = gap
        result["gap_verdict"] = NOT_MEASURED if gap is None else _interval_verdict(gap)
        result["test_set_error"] = method
        if gap is not None:
            result["gap_power"] = power_figures(
                gaps,
                variances,
                thresholds["confidence"],
                thresholds["power"],
                thresholds["reference_gap"],
            )
    return result


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
        if d["gap_verdict"] == INCONCLUSIVE:
            power = d["gap_power"]
            points = {**power, "smallest_decided": 100 * power["smallest_decided"]}
            text += ": " + _power_text(
                points, "points", 100 * power["reference"], power["seeds_for_reference"]
            )
    elif d["inv_sqrt_and_inv_trained"]:
        text += "; gap not measured (under 2 seeds with both trained)"
    return text


def _c3_group(runs, n_test, test_correct, thresholds):
    """C3 on the runs of one combination of settings; None without a depth at which all
    three unnormalised scalings have runs."""
    common = set.intersection(*(set(runs.loc[runs["scaling"] == s, "depth"]) for s in UNNORMALISED))
    if not common:
        return None
    depths = [
        _c3_depth(runs[runs["depth"] == d], n_test, test_correct, thresholds)
        for d in sorted(common)
    ]
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


def check_c3(runs, manifests, test_correct, thresholds):
    """C3 from runs.csv (per-seed accuracies), the data manifests (test-set sizes) and
    each run's per-example test outcomes (``{run_id: bool array}``, or None), at every
    depth all three unnormalised scalings share, separately for each combination of the
    other grid settings."""
    confidence = thresholds["confidence"]
    test = (
        "Per combination of the other grid settings, at every depth where λ=1, λ=1/√n and "
        "λ=1/n all have runs. Stability: λ=1/√n and λ=1/n trained at every such depth (no "
        f"seed diverged, mean test accuracy ≥ {thresholds['trained_above']:g}) and λ=1 "
        "diverged (any seed) or stalled (mean test accuracy < "
        f"{thresholds['stalled_below']:g}) at the largest; holds or does not hold. Gap, at "
        "every depth where λ=1/√n and λ=1/n trained: acc(λ=1/√n) − acc(λ=1/n) paired by "
        f"seed, with a {confidence:.0%} interval whose half-width is the larger of the "
        "Student-t interval over seeds and the test-set error of the gap, computed from "
        "the two runs' outcomes on the same test images (paired: only the images exactly "
        "one of them gets right count); holds if the interval lies above 0, does not hold "
        "if it lies at or below 0, else inconclusive, with the smallest gap these seeds "
        f"decide {thresholds['power']:.0%} of the time and the seeds a gap of "
        f"{100 * thresholds['reference_gap']:g} points needs. C3 holds if stability and "
        "every gap hold; does not hold if either part does not hold anywhere; else "
        "inconclusive. BatchNorm is reported as the reference."
    )
    if runs is None or runs.empty:
        return Finding(test, NOT_MEASURED, _missing_text("no runs table"))
    if not (runs["status"] == "ok").any():
        return Finding(
            test, NOT_MEASURED, _missing_text(f"no trained run (all {len(runs)} diverged)")
        )
    sizes = {m["dataset"]: m["n_test"] for m in manifests or []}
    missing = sorted(set(runs["dataset"]) - set(sizes))
    if missing:
        raise ValueError(f"no data manifest (test-set size) for dataset(s) {', '.join(missing)}")
    runs = runs.assign(scaling=_scaling_names(runs))
    groups = [
        _c3_group(group, sizes[group["dataset"].iloc[0]], test_correct, thresholds)
        for _, group in runs.groupby(list(aggregate.SETTINGS))
    ]
    groups = [g for g in groups if g is not None]
    if not groups:
        text = _missing_text("no depth where λ=1, λ=1/√n and λ=1/n all have runs")
        return Finding(test, NOT_MEASURED, text)
    parts = [
        f"{g['dataset']} (stability {g['stability']}, gap {g['gap']}): "
        + "; ".join(_c3_depth_text(d) for d in g["depths"])
        for g in groups
    ]
    verdict = _combined(g["verdict"] for g in groups)
    return Finding(test, verdict, " | ".join(parts), {"groups": groups})


# --- C4 -----------------------------------------------------------------------------

#: The verdict each shape of ``capacity.peak_test`` gives.
_C4_VERDICTS = {
    capacity.ONE_PEAK: HOLDS,
    capacity.NO_INTERIOR_PEAK: DOES_NOT_HOLD,
    capacity.SEVERAL_PEAKS: DOES_NOT_HOLD,
    capacity.UNRESOLVED: INCONCLUSIVE,
}


def _lambda_list(values):
    return ", ".join(f"{v:.3g}" for v in values)


def _flagged_text(runs):
    """The runs whose GC says little about a learned function, in words."""
    parts = []
    for column, what in (
        ("flag_gc_peak_at_init", "GC highest at initialisation"),
        ("flag_train_loss_above_chance", "final train loss above ln(classes)"),
    ):
        flagged = runs[runs[column].fillna(False).astype(bool)] if column in runs else runs[:0]
        if len(flagged):
            parts.append(f"{what} at λ = {_lambda_list(sorted(flagged['lambda'].unique()))}")
    return "; ".join(parts)


def _c4_sweep(sweep, thresholds):
    """C4 on one sweep (one setting of capacity.SWEEP_SETTINGS): (verdict, text, figures)."""
    metric = thresholds["metric"]
    limit = capacity.stability_limit(sweep)
    stable = capacity.stable_runs(sweep)
    clipped = capacity.fixed_lambda_runs(sweep, clipped=True)
    figures = {
        "settings": {k: _plain(sweep[k].iloc[0]) for k in capacity.SWEEP_SETTINGS if k in sweep},
        "stability_limit_lambda": limit["limit_lambda"],
        "diverged_unclipped_runs": limit["diverged_runs"],
        "deciding_runs": sorted(stable["run_id"]) if "run_id" in stable else [],
        "clipped_runs_not_deciding": sorted(clipped["run_id"]) if "run_id" in clipped else [],
    }
    if limit["limit_lambda"] is None:
        limit_text = "no unclipped run diverged (the stability limit lies above the sweep)"
    else:
        limit_text = (
            f"stability limit λ = {limit['limit_lambda']:.3g} (unclipped runs diverged at λ = "
            f"{_lambda_list(sorted({r['lambda'] for r in limit['diverged_runs']}))})"
        )
    flagged = _flagged_text(stable)
    if stable.empty:
        text = f"{limit_text}; no λ of the sweep lies below it"
        return NOT_MEASURED, _missing_text(text), figures
    result = capacity.peak_test(
        stable,
        metric,
        thresholds["confidence"],
        thresholds["min_stable_lambdas"],
        thresholds["power"],
        thresholds["reference_peak_log10"],
    )
    figures["test"] = result
    decided_by = (
        f"decided by the {len(stable)} unclipped runs at λ = {_lambda_list(result['lambdas'])}"
        f" (seeds {', '.join(map(str, result['seeds']))})"
    )
    if "reason" in result:
        text = f"{limit_text}; the stable range is too short: {result['reason']}"
        return NOT_MEASURED, _missing_text(text), figures
    verdict = _C4_VERDICTS[result["shape"]]
    ends = [result["minus_smallest"], result["minus_largest"]]
    curve = ", ".join(
        f"{lam:.3g}: {value:.2f}"
        for lam, value in zip(result["lambdas"], result["mean_log10"], strict=True)
    )
    confidence = thresholds["confidence"]
    text = (
        f"{limit_text}; {decided_by}: seed-mean log10 {metric} at λ = {curve}; highest "
        f"interior λ = {result['interior_argmax_lambda']:.3g}; its log10 {metric} minus the "
        "smallest λ's "
        + ", minus the largest λ's ".join(
            f"{i['mean']:+.3f} [{i['low']:+.3f}, {i['high']:+.3f}]" for i in ends
        )
        + f" ({confidence:.0%} intervals): {result['shape']}"
    )
    second = result["second_peak"]
    if second is not None:
        text += (
            f" (GC at λ = {second['above_lambda']:.3g} above λ = {second['below_lambda']:.3g}"
            f" on the wrong side of the peak by {second['mean']:+.3f} [{second['low']:+.3f}, "
            f"{second['high']:+.3f}])"
        )
    if verdict == INCONCLUSIVE:
        power = result["power"]
        text += "; " + _power_text(
            power, "decades over both ends", power["reference"], power["seeds_for_reference"]
        )
    if flagged:
        text += f"; flagged: {flagged}"
    if len(clipped):
        finished = clipped[clipped["status"] == "ok"]
        means = np.log10(finished[metric]).groupby(finished["lambda"]).mean()
        text += (
            "; clipped runs (gradient norm clipped, past the limit; shown, never deciding): "
            + ", ".join(f"λ = {lam:.3g}: {value:.2f}" for lam, value in means.items())
        )
    return verdict, text, figures


def check_c4(sweep, thresholds):
    """C4 from capacity/gc_vs_lambda.csv: on the λ below the unclipped sweep's stability
    limit, does GC(λ) have one interior peak above both ends beyond the noise?"""
    metric, confidence = thresholds["metric"], thresholds["confidence"]
    test = (
        f"Per sweep, over its unclipped fixed-λ runs. Stability limit: the smallest λ at "
        f"which any seed diverged. The test uses only the λ below it (at least "
        f"{thresholds['min_stable_lambdas']}, with ≥ 2 seeds present at every one; fewer: "
        f"not measured) and the seeds present at every such λ: the interior λ with the "
        f"highest seed-mean log10 {metric}, and the differences of its log10 {metric} from "
        f"the smallest and the largest stable λ's, paired by seed, each with a "
        f"{confidence:.0%} interval (half-width: the larger of the Student-t interval over "
        "seeds and GC's own standard error). Holds (one interior peak) if both intervals lie "
        "above 0, the seed-mean curve has a single local maximum, and no pair of λ on one "
        "side of the peak shows GC going the wrong way beyond the noise (paired interval "
        "above 0, Bonferroni-corrected over the pairs); does not hold if an end interval "
        "lies at or below 0 (an end as high as any interior point: monotone, U-shaped, "
        "flat) or such a second peak exists; else inconclusive, with the smallest peak the "
        f"seeds decide {thresholds['power']:.0%} of the time and the seeds a "
        f"{thresholds['reference_peak_log10']:g}-decade peak needs. Clipped runs are "
        "reported beside the test and never enter it; runs whose GC peaks at "
        "initialisation or whose final train loss is above ln(classes) are flagged."
    )
    if sweep is None or sweep.empty:
        return Finding(test, NOT_MEASURED, _missing_text("no λ sweep"))
    sweeps = [
        (settings, _c4_sweep(group, thresholds))
        for settings, group in sweep.groupby(
            [k for k in capacity.SWEEP_SETTINGS if k in sweep], dropna=False
        )
    ]
    verdict = _combined(v for _, (v, _, _) in sweeps)
    if len(sweeps) == 1:
        _, (_, text, figures) = sweeps[0]
        return Finding(test, verdict, text, figures)
    text = " | ".join(
        f"n={dict(zip(capacity.SWEEP_SETTINGS, s, strict=False))['depth']} ({v}): {t}"
        for s, (v, t, _) in sweeps
    )
    return Finding(test, verdict, text, {"sweeps": [f for _, (_, _, f) in sweeps]})


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
        return Finding(test, NOT_MEASURED, _missing_text("no expansion tables"))
    orders = orders.assign(scaling=_scaling_names(orders))
    truncated = truncated.assign(scaling=_scaling_names(truncated))
    rows = _c5_rows(orders, truncated, keep)
    trained = [r for r in rows if r["stage"] == "trained" and r["order_1"] is not None]
    answered = [r for r in trained if r.get(f"accuracy_ratio_K{keep[0]}") is not None]
    if not answered:
        text = _missing_text("no trained network with per-order norms and truncated accuracy")
        return Finding(test, NOT_MEASURED, text)
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
    return Finding(test, MEASURED, summary, {"rows": rows})


# --- the claims, one record each ----------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """One claim of docs/science.md §3 and how this run checks it."""

    id: str
    statement: str  # as docs/science.md states it, shortened
    figure: str  # the figure the verdict rests on, relative to results/claims.{md,html}
    what_would_change: str  # in words: claims.md prints it under the test
    tables: tuple  # the names of the `claims` rule's inputs the check reads, in order
    check: Callable  # check(*tables, thresholds) -> Finding, on one family's rows


CLAIMS = (
    Claim(
        "C1",
        "Expansion: the order-K truncation error of the residual expansion scales as "
        "λ^(K+1) as λ → 0 (log-log slope K+1; 3 for the paper's order 2).",
        "figures/expansion_truncation.png",
        "A smooth tower's fitted slope leaving the tolerance of K+1 (a fit range where "
        "round-off or the next order bends the line), or a bug in the expansion failing "
        "the exactness check below the first flip; no smooth activation in "
        "expansion.truncation.activations, or no ReLU input fitted, makes it not measured. "
        "The ReLU batch slope cannot change it: it measures the mask flips the theorem "
        "excludes.",
        ("truncation_slopes", "truncation_per_input", "truncation"),
        check_c1,
    ),
    Claim(
        "C2",
        "Explosion: at initialisation, without normalisation, the output norm grows "
        "exponentially in depth n for λ=1 and stays bounded for λ=1/√n and λ=1/n.",
        "figures/init_norms.png",
        "A λ=1 growth rate below the threshold, or a λ=1/√n or λ=1/n norm at the "
        "largest depth at or above the bound; with fewer common depths than min_depths it "
        "is not measured.",
        ("init_norms",),
        check_c2,
    ),
    Claim(
        "C3",
        "Normalisation-free depth: unnormalised towers with λ=1/√n or λ=1/n train stably "
        "at large depth, λ=1 diverges or stalls, and λ=1/√n reaches a higher test "
        "accuracy than λ=1/n.",
        "figures/accuracy_vs_depth.png",
        "Stability: a λ=1/√n or λ=1/n seed diverging or ending below the trained "
        "threshold at any depth, or λ=1 training at the largest depth. Gap: more seeds "
        "(the seeds a reference gap needs are given when it is inconclusive) or a larger "
        "test set can turn an inconclusive gap into holds or does not hold.",
        ("runs", "data_manifests", "test_correct"),
        check_c3,
    ),
    Claim(
        "C4",
        "Capacity control: the geometric complexity of the learned function is unimodal "
        "as a function of λ, up to the stability limit.",
        "figures/capacity_gc_vs_lambda.png",
        "More stable λ (a smaller learning rate or more λ below the limit) can move the "
        "peak or the ends; more seeds narrow the intervals and can turn inconclusive into "
        "either verdict (the seeds a reference peak needs are given); runs that train "
        "past the limit only because their gradients are clipped never change it.",
        ("capacity_sweep",),
        check_c4,
    ),
    Claim(
        "C5",
        "Question: how large are the order-1, order-2 and higher-order contributions at "
        "initialisation and after training, and how accurate is a classifier that keeps "
        "only the orders ≤ K?",
        "figures/expansion_truncated_accuracy.png",
        "Nothing: it is reported, not judged; absent tables make it not measured.",
        ("orders", "truncated_accuracy"),
        check_c5,
    ),
)


def _finding(check):
    """A check of claims_transformer (which returns a Finding's fields) as a check here."""
    return lambda *args: Finding(**check(*args))


#: Transformers (issue 20): claims about their own family, checked on their own tables
#: (resdepth.claims_transformer; the statements are its STATEMENTS).
CLAIMS += (
    Claim(
        "C1T",
        claims_transformer.STATEMENTS["C1T"],
        "figures/transformer_truncation.png",
        "A slope of a norm, seed and order K leaving ±slope_tolerance of K+1 (a fit range "
        "reaching the radius of convergence bends the line); a slope with fewer than 3 "
        "points above round-off makes it not measured.",
        ("truncation_transformer_slopes",),
        _finding(claims_transformer.check_truncation),
    ),
    Claim(
        "C2T",
        claims_transformer.STATEMENTS["C2T"],
        "figures/transformer_init_norms.png",
        "More seeds narrow the intervals of the norm-free growth rate and of the pre-LN "
        "power of n; an interval straddling a threshold is inconclusive.",
        ("init_norms_transformer",),
        _finding(claims_transformer.check_init_norms),
    ),
    Claim(
        "C6",
        claims_transformer.STATEMENTS["C6"],
        "figures/transformer_radius.png",
        "More seeds narrow each depth's interval; a higher order (transformer.radius.order) "
        "moves the ratio-test estimate by its drift.",
        ("radius_transformer",),
        _finding(claims_transformer.check_radius),
    ),
    Claim(
        "C7",
        claims_transformer.STATEMENTS["C7"],
        "figures/transformer_truncated_accuracy.png",
        "A λ=1 transformer run that learns recall (full accuracy at least min_full_acc) "
        "keeping more than max_order1_acc at order 1; without such a run (none trained, or "
        "none learned recall) it is not measured.",
        ("truncated_accuracy", "data_manifests"),
        _finding(claims_transformer.check_recall_order),
    ),
)


#: The result tables the checks read, by name (the ``claims`` rule's input names).
TABLE_NAMES = tuple(dict.fromkeys(name for claim in CLAIMS for name in claim.tables))


def _families(table):
    """The (dataset, arch) pairs of a table, or [None] for one without those columns."""
    if not isinstance(table, pd.DataFrame) or table.empty or not set(FAMILY) <= set(table):
        return [None]
    return sorted(set(map(tuple, table[list(FAMILY)].drop_duplicates().to_numpy())))


def _of_family(table, family):
    """A table's rows of one family (a table without family columns, or not a frame,
    as it is)."""
    if family is None or not isinstance(table, pd.DataFrame) or not set(FAMILY) <= set(table):
        return table
    mask = (table[list(FAMILY)] == list(family)).all(axis=1)
    return table[mask]


def check_claim(claim, tables, thresholds):
    """One claim's check, once per family of its first table; the claim's verdict
    combines the families that were measured."""
    inputs = [tables.get(name) for name in claim.tables]
    findings = [
        (family, claim.check(*(_of_family(t, family) for t in inputs), thresholds))
        for family in _families(inputs[0])
    ]
    if len(findings) == 1:
        family, finding = findings[0]
        measured = finding.measured
        if family is not None:
            measured = {**measured, "family": dict(zip(FAMILY, family, strict=True))}
        return ClaimCheck(
            claim.id, claim.statement, finding.test, finding.verdict, finding.summary, measured
        )
    decided = [f.verdict for _, f in findings if f.verdict != NOT_MEASURED]
    verdict = (MEASURED if MEASURED in decided else _combined(decided)) if decided else NOT_MEASURED
    summary = " || ".join(f"{a} on {d} ({f.verdict}): {f.summary}" for (d, a), f in findings)
    families = [
        {**dict(zip(FAMILY, family, strict=True)), **asdict(finding)}
        for family, finding in findings
    ]
    return ClaimCheck(
        claim.id, claim.statement, findings[0][1].test, verdict, summary, {"families": families}
    )


def check_all(tables, thresholds):
    """Every claim's check. ``tables`` maps a name of TABLE_NAMES to its table, or to
    None (or no entry) when this config does not produce it; ``thresholds`` is the
    config's ``claims`` section."""
    missing = [c.id for c in CLAIMS if c.id not in thresholds]
    if missing:
        raise ValueError(f"config key claims: no thresholds for {', '.join(missing)}")
    return [check_claim(claim, tables, thresholds[claim.id]) for claim in CLAIMS]


def read_tables(paths):
    """Read the result files the checks use; ``paths`` maps a table name to its path, a
    list of paths or None. CSV scalings stay text; JSON files are read as dicts (a list
    of them as a list); per-run ``.npy`` files as ``{run_id: array}``, keyed by the run's
    folder (results/runs/<run_id>/)."""

    def read(path):
        path = Path(path)
        if path.suffix == ".json":
            return json.loads(path.read_text())
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False)
        return pd.read_csv(path, dtype={"scaling": str})

    tables = {}
    for name, path in paths.items():
        if path is None:
            tables[name] = None
        elif isinstance(path, list | tuple) and path and Path(path[0]).suffix == ".npy":
            tables[name] = {Path(p).parent.name: read(p) for p in path}
        elif isinstance(path, list | tuple):
            tables[name] = [read(p) for p in path]
        else:
            tables[name] = read(path)
    return tables


def claims_json(checks, thresholds):
    """The checks as a JSON document (with the thresholds they used)."""
    document = {"claims": [asdict(c) for c in checks], "thresholds": thresholds}
    return json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def checks_from_json(text):
    """The checks of a claims.json document."""
    return [ClaimCheck(**c) for c in json.loads(text)["claims"]]


INTRODUCTION = (
    "Computed by the claims rule from this run's results, with the thresholds of the "
    "config section claims. Verdicts: holds, does not hold, inconclusive (the difference "
    "a claim is about lies inside the seed and test-set noise; the smallest difference "
    "the seeds could have decided is given), not measured (the reason is given); C5 is a "
    "question, measured when this run answers it."
)


def _blocks(checks, figures=None):
    """The claims document as ``formats`` blocks; ``figures`` maps a claim id to its
    figure's bytes, embedded in HTML (None: linked)."""
    figures = figures or {}
    records = {claim.id: claim for claim in CLAIMS}
    blocks = [
        ("title", "Claims check"),
        ("paragraph", "", INTRODUCTION),
        (
            "table",
            formats.Table(
                "",
                ["claim", "verdict", "measured"],
                [[c.id, c.verdict, c.summary] for c in checks],
                n_keys=3,
            ),
        ),
    ]
    for c in checks:
        record = records[c.id]
        blocks.append(("heading", f"{c.id}: {c.verdict}"))
        if c.verdict != NOT_MEASURED:
            blocks.append(("figure", "Figure:", record.figure, figures.get(c.id)))
        blocks += [
            ("paragraph", "", c.statement),
            ("paragraph", "Test.", c.test),
            ("paragraph", "What would change the verdict.", record.what_would_change),
            (
                "paragraph",
                "Not measured:" if c.verdict == NOT_MEASURED else "Measured.",
                c.summary + ".",
            ),
        ]
        if c.measured.get("rows"):
            blocks.append(("table", _rows_table(c.measured["rows"])))
    return blocks


def _rows_table(rows):
    """C5's per-(scaling, depth, stage) figures as a ``formats.Table``."""
    header = list(dict.fromkeys(key for row in rows for key in row))

    def text(key, value):
        if value is None:
            return ""
        if key == "scaling":
            return scaling_label(value)
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    cells = [[text(key, row.get(key)) for key in header] for row in rows]
    return formats.Table("", header, cells, n_keys=3)


def claims_markdown(checks):
    """A table of verdicts, then one section per claim: statement, test, figures."""
    return formats.markdown_page(_blocks(checks))


#: Verdict colours of the HTML page (green, red, yellow, blue, grey).
_VERDICT_COLORS = {
    HOLDS: "background:#d4edda",
    DOES_NOT_HOLD: "background:#f8d7da",
    INCONCLUSIVE: "background:#fff3cd",
    MEASURED: "background:#d6e9f8",
    NOT_MEASURED: "background:#e9ecef",
}


def claims_html(checks, figures):
    """The same document as a standalone HTML page (for the Snakemake report, which
    embeds it as a data URL: ``figures`` maps a claim id to its figure's PNG bytes,
    embedded in the page), each verdict cell coloured by its verdict."""
    return formats.html_page(
        "Claims check", _blocks(checks, figures), lambda text: _VERDICT_COLORS.get(text, "")
    )
