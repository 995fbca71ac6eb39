"""The claims check: does this run's data support claims C1-C5 of PAPER.md §3?

Each ``check_cN`` takes the result tables a claim is about (DataFrames or dicts read from
the files of docs/file-contracts.md, ``None`` when this config does not produce them) and
the config's ``claims.CN`` thresholds, and returns a ``ClaimCheck``: the statement, the
test applied written out with its thresholds, the measured figures, and a verdict.

Verdicts of C1-C4, which are statements: ``holds``, ``does not hold``, or ``not measured
in this config`` when the data a test needs are absent (a scaling, enough depths, a
result file). C5 is a question, not a statement: it is ``measured`` when the run has the
numbers that answer it, else ``not measured in this config``; the answer is in the
measured figures. Verdicts are only ever computed here, from the data.
"""

import json
import math
from dataclasses import asdict, dataclass, field
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd

from resdepth import aggregate

HOLDS = "holds"
DOES_NOT_HOLD = "does not hold"
MEASURED = "measured"
NOT_MEASURED = "not measured in this config"

#: Every verdict a check may return; C5 uses only the last two.
VERDICTS = (HOLDS, DOES_NOT_HOLD, MEASURED, NOT_MEASURED)

#: The claims as PAPER.md §3 states them, shortened.
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
    return frame["scaling"].map(aggregate.scaling_name)


def _missing_text(what):
    """The summary of a claim that cannot be tested: what is missing."""
    return f"this run has {what}"


def _plain(value):
    """A numpy scalar as the Python value JSON can hold."""
    return value.item() if isinstance(value, np.generic) else value


# --- C1 -----------------------------------------------------------------------------


def check_c1(slopes, thresholds):
    """C1 from expansion/truncation_slopes.csv: the fitted log-log slope of the order-K
    truncation error (mean over seeds) must be within the tolerance of K+1 for every K."""
    orders = sorted(thresholds["orders"])
    tolerance = thresholds["slope_tolerance"]
    decomposition, statistic = thresholds["decomposition"], thresholds["statistic"]
    test = (
        f"Log-log slope of the order-K truncation error vs λ ({decomposition} "
        f"decomposition, {statistic} statistic), fitted at small λ on fresh towers, mean "
        f"over seeds; holds if |slope − (K+1)| ≤ {tolerance:g} for every K in "
        f"{', '.join(map(str, orders))}. (T_1, T_2 against their closed forms are checked "
        f"by the unit tests, not here.)"
    )
    if slopes is None or slopes.empty:
        return _check("C1", test, NOT_MEASURED, _missing_text("no truncation slopes"))
    by_statistic = slopes[slopes["statistic"] == statistic]
    mean_slopes = by_statistic.groupby(["decomposition", "order"])["slope"].mean()
    rows = by_statistic[by_statistic["decomposition"] == decomposition]
    mean_slope = rows.groupby("order")["slope"].mean()
    missing = [k for k in orders if not math.isfinite(mean_slope.get(k, math.nan))]
    if missing:
        text = _missing_text(f"no fitted slope for K={', '.join(map(str, missing))}")
        return _check("C1", test, NOT_MEASURED, text)
    measured = {
        "slopes": {str(k): float(mean_slope[k]) for k in orders},
        "ideal": {str(k): k + 1 for k in orders},
        "depth": sorted(int(d) for d in rows["depth"].unique()),
        "n_seeds": int(rows["seed"].nunique()),
        "fit_lambda_range": [
            float(rows["fit_lambda_min"].min()),
            float(rows["fit_lambda_max"].max()),
        ],
    }
    # The other decomposition's slopes are context, not part of the test.
    others = {
        other: {str(k): float(v) for k, v in mean_slopes[other].items()}
        for other in mean_slopes.index.unique("decomposition")
        if other != decomposition
    }
    measured["other_decompositions"] = others
    within = all(abs(mean_slope[k] - (k + 1)) <= tolerance for k in orders)
    summary = "; ".join(f"K={k}: slope {mean_slope[k]:.2f} (ideal {k + 1})" for k in orders)
    for other, values in others.items():
        summary += f" ({other} decomposition: " + ", ".join(f"{v:.2f}" for v in values.values())
        summary += ")"
    return _check("C1", test, HOLDS if within else DOES_NOT_HOLD, summary, measured)


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


def _c3_group(cells, thresholds):
    """C3 on the accuracy cells of one combination of settings; None if not measurable."""
    by_scaling = {s: cells[cells["scaling"] == s] for s in UNNORMALISED}
    common = set.intersection(*(set(c["depth"]) for c in by_scaling.values()))
    if not common:
        return None
    largest = max(common)
    cell = {s: c[c["depth"] == largest].iloc[0] for s, c in by_scaling.items()}

    def accuracy(row):
        return float(row["test_acc_mean"]) if row["n_ok"] > 0 else None

    def trained(row):
        return row["n_diverged"] == 0 and accuracy(row) >= thresholds["trained_above"]

    def failed(row):
        return row["n_diverged"] > 0 or accuracy(row) < thresholds["stalled_below"]

    acc = {s: accuracy(row) for s, row in cell.items()}
    gap = None
    if acc["inv_sqrt"] is not None and acc["inv"] is not None:
        gap = acc["inv_sqrt"] - acc["inv"]
    bn = cells[(cells["scaling"] == "bn") & (cells["depth"] == largest)]
    bn_acc = accuracy(bn.iloc[0]) if len(bn) else None
    result = {
        **{s: _plain(cells.iloc[0][s]) for s in aggregate.SETTINGS},
        "largest_depth": int(largest),
        "test_acc": acc,
        "diverged": {
            s: f"{int(row['n_diverged'])}/{int(row['n_seeds'])}" for s, row in cell.items()
        },
        "one_diverged_or_stalled": bool(failed(cell["one"])),
        "inv_sqrt_trained": bool(trained(cell["inv_sqrt"])),
        "inv_trained": bool(trained(cell["inv"])),
        "inv_sqrt_minus_inv": gap,
        "bn_test_acc": bn_acc,
    }
    result["holds"] = bool(
        result["one_diverged_or_stalled"]
        and result["inv_sqrt_trained"]
        and result["inv_trained"]
        and gap >= thresholds["min_gap"]
    )
    return result


def _percent(value):
    return "diverged" if value is None else f"{100 * value:.1f}%"


def check_c3(accuracy, thresholds):
    """C3 from tables/accuracy.csv, at the largest depth all three unnormalised scalings
    share, separately for each combination of the other grid settings."""
    test = (
        "At the largest depth where λ=1, λ=1/√n and λ=1/n were all trained (per "
        "combination of the other grid settings): λ=1 diverged (any seed) or stalled (mean "
        f"test accuracy < {thresholds['stalled_below']:g}); λ=1/√n and λ=1/n trained (no "
        f"seed diverged, mean test accuracy ≥ {thresholds['trained_above']:g}); and "
        f"acc(λ=1/√n) − acc(λ=1/n) ≥ {thresholds['min_gap']:g}. Holds if all hold in every "
        "combination; BatchNorm is reported as the reference."
    )
    if accuracy is None or accuracy.empty:
        return _check("C3", test, NOT_MEASURED, _missing_text("no accuracy table"))
    accuracy = accuracy.assign(scaling=_scaling_names(accuracy))
    groups = [
        _c3_group(cells, thresholds) for _, cells in accuracy.groupby(list(aggregate.SETTINGS))
    ]
    groups = [g for g in groups if g is not None]
    if not groups:
        text = _missing_text("no depth where λ=1, λ=1/√n and λ=1/n were all trained")
        return _check("C3", test, NOT_MEASURED, text)
    parts = []
    for g in groups:
        cells = ", ".join(
            f"{aggregate.scaling_label(s)} {_percent(g['test_acc'][s])} "
            f"({g['diverged'][s]} seeds diverged)"
            for s in UNNORMALISED
        )
        text = f"{g['dataset']}, n={g['largest_depth']}: {cells}"
        if g["inv_sqrt_minus_inv"] is not None:
            text += f", gap {100 * g['inv_sqrt_minus_inv']:+.1f} points"
        if g["bn_test_acc"] is not None:
            text += f", BatchNorm {_percent(g['bn_test_acc'])}"
        parts.append(text)
    verdict = HOLDS if all(g["holds"] for g in groups) else DOES_NOT_HOLD
    return _check("C3", test, verdict, "; ".join(parts), {"groups": groups})


# --- C4 -----------------------------------------------------------------------------


def check_c4(unimodality, thresholds):
    """C4 from capacity/unimodality.json: the fraction of seeds whose GC(λ) curve has a
    single interior maximum must reach the threshold."""
    metric, minimum = thresholds["metric"], thresholds["min_fraction_interior_maximum"]
    test = (
        f"Fraction of seeds whose {metric}(λ) curve over the λ sweep has a single interior "
        f"maximum (the test of capacity/unimodality.json) ≥ {minimum:g}."
    )
    result = (unimodality or {}).get(metric)
    if not result or result.get("fraction_interior_maximum") is None:
        return _check("C4", test, NOT_MEASURED, _missing_text("no λ sweep with finished runs"))
    fraction = result["fraction_interior_maximum"]
    measured = {
        "metric": metric,
        "fraction_interior_maximum": fraction,
        "n_seeds": len(result["per_seed"]),
        "median_argmax_lambda": result["median_argmax_lambda"],
        "seed_mean_shape": result["seed_mean"]["shape"],
        "depth": unimodality.get("depth"),
        "lambdas": unimodality.get("lambdas"),
    }
    summary = (
        f"{metric}: {fraction:.0%} of {measured['n_seeds']} seeds have a single interior maximum"
    )
    if result["median_argmax_lambda"] is not None:
        summary += f" (median at λ={result['median_argmax_lambda']:.3g})"
    summary += f"; seed mean: {measured['seed_mean_shape']}"
    return _check("C4", test, HOLDS if fraction >= minimum else DOES_NOT_HOLD, summary, measured)


# --- C5 -----------------------------------------------------------------------------


def _c5_rows(orders, truncated, keep_orders):
    """Per (scaling, depth, stage), mean over seeds: ‖P_1‖, ‖P_2‖, the largest ‖P_k‖ with
    k ≥ 3 (relative to ‖x_n − x_0‖), and for trained networks the accuracy with orders
    ≤ K kept, relative to the full network's."""
    paths = orders[(orders["decomposition"] == "path") & (orders["order"] >= 1)]
    keys = ["scaling", "depth", "stage"]
    paths = paths.sort_values(
        keys, key=lambda c: c.map(aggregate.scaling_sort_key) if c.name == "scaling" else c
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
            f"{aggregate.scaling_label(r['scaling'])}: ‖P_1‖ {r['order_1']:.2g}, ‖P_2‖ "
            f"{_format_optional(r['order_2'])}; accuracy kept {ratios}"
        )
    summary = f"trained, n={largest} (norms relative to ‖x_n − x_0‖): " + "; ".join(parts)
    return _check("C5", test, MEASURED, summary, {"rows": rows})


def _format_optional(value):
    return "n/a" if value is None else f"{value:.2g}"


# --- all claims, files ---------------------------------------------------------------


#: The result tables the checks read, by name (the ``claims`` rule's input names).
TABLE_NAMES = (
    "truncation_slopes",
    "init_norms",
    "accuracy",
    "unimodality",
    "orders",
    "truncated_accuracy",
)


def check_all(tables, thresholds):
    """Every claim's check. ``tables`` maps a name of TABLE_NAMES to its table, or to
    None (or no entry) when this config does not produce it."""
    return [
        check_c1(tables.get("truncation_slopes"), thresholds["C1"]),
        check_c2(tables.get("init_norms"), thresholds["C2"]),
        check_c3(tables.get("accuracy"), thresholds["C3"]),
        check_c4(tables.get("unimodality"), thresholds["C4"]),
        check_c5(tables.get("orders"), tables.get("truncated_accuracy"), thresholds["C5"]),
    ]


def read_tables(paths):
    """Read the result files the checks use; ``paths`` maps a table name to its path or
    None. CSV scalings stay text; JSON files are read as dicts."""
    tables = {}
    for name, path in paths.items():
        if path is None:
            tables[name] = None
        elif Path(path).suffix == ".json":
            tables[name] = json.loads(Path(path).read_text())
        else:
            tables[name] = pd.read_csv(path, dtype={"scaling": str})
    return tables


def claims_json(checks, thresholds):
    """The checks as a JSON document (with the thresholds they used)."""
    document = {"claims": [asdict(c) for c in checks], "thresholds": thresholds}
    return json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


INTRODUCTION = (
    "Computed by the claims rule from this run's results, with the thresholds of the "
    "config section claims. Verdicts: holds, does not hold, not measured in this config; "
    "C5 is a question, measured when this run answers it."
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
            return aggregate.scaling_label(value)
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


#: Verdict colours of the HTML page (green, red, blue, grey).
_VERDICT_COLORS = {
    HOLDS: "#d4edda",
    DOES_NOT_HOLD: "#f8d7da",
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
