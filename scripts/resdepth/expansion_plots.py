"""Figures of the expansion study (claims C1, C5), in the style of ``plots``.

Scalings keep the colours and names they have in every other figure; curves are means
over seeds.
"""

import math

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import colormaps
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from resdepth import plots
from resdepth.scalings import scaling_label, scaling_name, sorted_scalings


def _mean_over_seeds(frame, keys, value):
    """Mean of ``value`` per ``keys`` over seeds, ignoring NaN (undefined) entries."""
    return frame.groupby(keys, sort=True)[value].mean().reset_index()


def _truncation_panel(ax, truncation, slopes, colors, title):
    """Error vs λ per order K (mean over seeds), legend: fitted slope vs K+1."""
    for order, color in colors.items():
        rows = truncation[truncation["order"] == order]
        curve = _mean_over_seeds(rows, ["lambda"], "rel_error")
        slope = slopes.loc[slopes["order"] == order, "slope"].mean()
        ax.plot(
            curve["lambda"],
            curve["rel_error"],
            marker="o",
            markersize=3,
            color=color,
            label=f"K={order}: slope {slope:.2f} (ideal {order + 1})",
        )
    if len(slopes):
        ax.axvspan(slopes["fit_lambda_min"].min(), slopes["fit_lambda_max"].max(), color="0.92")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("λ (every module)")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize="small")


@plots.styled
def truncation_figure(truncation, slopes, per_input):
    """Claim C1: truncation error vs λ (log-log) for each order K.

    Top row, ReLU towers: the Taylor expansion at λ = 0, the path decomposition at λ,
    and the fraction of ReLU units off their λ = 0 mask (each adds an O(λ²) piece to the
    Taylor remainder). Bottom row: the Taylor expansion of each smooth tower (the
    control), and the distribution of the ReLU per-input slopes fitted below each
    input's first mask change. Legends give the fitted slope (mean over seeds); the
    shaded band is the fit range.
    """
    smooth = sorted(set(truncation["activation"]) - {"relu"})
    fig, axes = plots.new_figure(nrows=2, ncols=max(3, len(smooth) + 1), width=14.0, height=8.4)
    orders = sorted(truncation["order"].unique())
    colors = dict(zip(orders, sns.color_palette("colorblind", len(orders)), strict=True))
    panels = [
        (axes[0, 0], "relu", "taylor", "ReLU: Taylor at λ=0 (masks at x₀)"),
        (axes[0, 1], "relu", "path", "ReLU: paths at λ (masks of the forward pass)"),
        *(
            (axes[1, i], a, "taylor", f"{a} (smooth control): Taylor at λ=0")
            for i, a in enumerate(smooth)
        ),
    ]
    for ax, activation, decomposition, title in panels:
        chosen = (truncation["activation"] == activation) & (
            truncation["decomposition"] == decomposition
        )
        fitted = (slopes["activation"] == activation) & (slopes["decomposition"] == decomposition)
        _truncation_panel(ax, truncation[chosen], slopes[fitted], colors, title)
    axes[0, 0].set_ylabel("‖x_n − order-K truncation‖ / ‖x₀‖")
    relu = truncation[truncation["activation"] == "relu"]
    changes = _mean_over_seeds(relu, ["lambda"], "mask_change_fraction")
    axes[0, 2].plot(changes["lambda"], changes["mask_change_fraction"], marker="o", color="0.3")
    axes[0, 2].set_xscale("log")
    axes[0, 2].set_yscale("log")
    axes[0, 2].set_xlabel("λ (every module)")
    axes[0, 2].set_ylabel("fraction of ReLU units")
    axes[0, 2].set_title("ReLU units off their λ=0 mask")
    ax = axes[1, len(smooth)]
    for order, color in colors.items():
        fitted = per_input.loc[per_input["order"] == order, "slope"].dropna()
        ax.hist(
            fitted,
            bins=40,
            range=(0, 6),
            color=color,
            alpha=0.6,
            label=f"K={order}: "
            f"{len(fitted)} of {int((per_input['order'] == order).sum())} inputs fitted",
        )
        ax.axvline(order + 1, color=color, linestyle="--")
    ax.set_xlabel("per-input slope (below its first mask change)")
    ax.set_ylabel("inputs")
    ax.set_title("ReLU, input by input (dashed: K+1)")
    ax.legend(loc="upper left", fontsize="small")
    for unused in axes[1, len(smooth) + 1 :]:
        unused.set_visible(False)
    for unused in axes[0, 3:]:
        unused.set_visible(False)
    fig.suptitle(
        plots.settings_title(truncation, ["dataset", "arch", "width", "depth"])
        + f", fresh towers, {truncation['seed'].nunique()} seed(s)"
    )
    return fig


#: Depth colours run along plasma from dark (deepest) to this point (shallowest): every
#: shade keeps a contrast of at least 3:1 against the white axes.
_DEPTH_PALETTE_END = 0.6


def _depth_colors(depths):
    """Deeper towers darker: one plasma shade per depth, each legible on white."""
    shades = np.linspace(_DEPTH_PALETTE_END, 0.0, len(depths)) if len(depths) > 1 else [0.0]
    return {d: colormaps["plasma"](s) for d, s in zip(depths, shades, strict=True)}


def terms_per_input_norm(orders):
    """``orders`` with ``input_rel_norm`` = ‖term_k‖ / ‖x₀‖ added.

    The table's ``rel_norm`` divides by ‖x_n − x₀‖, which explodes with depth for λ = 1
    and turns every term into round-off-sized ratios; the order-0 term of either
    decomposition is x₀ itself, so ``rel_norm_k / rel_norm_0`` measures each term in units
    of the tower's input instead: the same for every scaling, at init and trained. NaN
    where ‖x_n − x₀‖ = 0 (SkipInit at initialisation), as in the table.
    """
    keys = ["run_id", "stage", "decomposition"]
    input_norm = orders[orders["order"] == 0].set_index(keys)["rel_norm"].rename("x0_rel_norm")
    joined = orders.join(input_norm, on=keys)
    return orders.assign(input_rel_norm=joined["rel_norm"] / joined["x0_rel_norm"])


def _prior_curve(terms, depth):
    """The binomial prior C(n,k)λ̄^k of one depth, multiplied by the constant that makes
    it meet the data at order 1.

    Matched to the init curve, or to the trained one where init is undefined (SkipInit
    starts as the identity)."""
    for stage in ("init", "trained"):
        rows = terms[(terms["depth"] == depth) & (terms["stage"] == stage)]
        curve = _mean_over_seeds(rows, ["order"], "input_rel_norm").set_index("order")
        curve = curve["input_rel_norm"]
        prior = _mean_over_seeds(rows, ["order"], "binomial_prior").set_index("order")
        prior = prior["binomial_prior"]
        if 1 in curve.index and math.isfinite(curve[1]) and prior.get(1, 0) > 0:
            return prior[prior.index >= 1] * curve[1] / prior[1]
    return None


#: The legend's words for the dotted line: how it is scaled is part of what it shows.
PRIOR_LABEL = (
    "path counting C(n,k)·λ̄ᵏ, scaled\nto meet k=1 at init (SkipInit:\ntrained, init is undefined)"
)


@plots.styled
def orders_figure(orders):
    """Claim C5: ‖P_k‖ / ‖x₀‖ vs order k, the path terms at the network's λ (they sum to
    x_n exactly), one panel per scaling; colour = depth, dashed = at initialisation,
    solid = trained, dotted = the binomial prior C(n,k)λ̄^k scaled to the order-1 point.

    The Taylor terms λ^k T_k of the same towers stay in orders.csv: drawn beside the
    paths they doubled the panels and, away from λ = 1, coincide with them.
    """
    scalings = sorted_scalings(orders["scaling"])
    depths = sorted(orders["depth"].unique())
    colors = _depth_colors(depths)
    fig, axes = plots.new_figure(
        1, len(scalings), width=3 + 3 * len(scalings), height=4.5, sharey=True
    )
    paths = terms_per_input_norm(orders[orders["decomposition"] == "path"])
    terms = paths[paths["order"] >= 1]
    for ax, scaling in zip(axes[0], scalings, strict=True):
        panel = terms[terms["scaling"] == scaling]
        for depth in depths:
            for stage, style in (("init", "--"), ("trained", "-")):
                rows = panel[(panel["depth"] == depth) & (panel["stage"] == stage)]
                curve = _mean_over_seeds(rows, ["order"], "input_rel_norm").dropna()
                ax.plot(
                    curve["order"],
                    curve["input_rel_norm"],
                    linestyle=style,
                    marker="o",
                    markersize=3,
                    color=colors[depth],
                )
            prior = _prior_curve(panel, depth)
            if prior is not None:
                ax.plot(prior.index, prior.values, linestyle=":", color=colors[depth])
        stages = panel.groupby("depth")["stage"].agg(set)
        untrained = [str(d) for d, s in stages.items() if "trained" not in s]
        if untrained:  # every seed diverged: no trained weights to expand
            ax.text(
                0.97,
                0.03,
                f"no trained run (diverged): n={','.join(untrained)}",
                transform=ax.transAxes,
                ha="right",
                va="bottom",
                fontsize="small",
                bbox={"facecolor": "white", "edgecolor": "0.8"},
            )
        ax.set_yscale("log")
        ax.set_title(scaling_label(scaling))
        ax.set_xlabel("order k (path length)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0, 0].set_ylabel("‖P_k‖ / ‖x₀‖  (x₀: the tower's input)")
    handles = [Line2D([], [], color=colors[d], label=f"n={d}") for d in depths]
    handles += [
        Line2D([], [], color="0.3", linestyle="--", label="init"),
        Line2D([], [], color="0.3", linestyle="-", label="trained"),
        Line2D([], [], color="0.3", linestyle=":", label=PRIOR_LABEL),
    ]
    fig.legend(handles=handles, loc="outside right center")
    title = plots.settings_title(orders, ["dataset", "arch", "width"])
    fig.suptitle(f"{title}: size of the order-k path terms, mean over seeds")
    return fig


def _accuracy_by_depth(frame, x, title_suffix, xlabel):
    """Test accuracy vs ``x`` per scaling (mean over seeds), one column per depth, with
    each scaling's full-model accuracy as a dashed line."""
    if frame.empty:  # the table has rows for trained runs only
        return plots.no_data_figure(
            f"test accuracy vs {xlabel}", "No trained run: every run of the grid diverged."
        )
    scalings = sorted_scalings(frame["scaling"])
    depths = sorted(frame["depth"].unique())
    fig, axes = plots.new_figure(
        ncols=len(depths), width=2 + 3.5 * len(depths), height=4.0, sharey=True
    )
    for ax, depth in zip(axes[0], depths, strict=True):
        for scaling in scalings:
            rows = frame[(frame["depth"] == depth) & (frame["scaling"] == scaling)]
            if rows.empty:
                continue
            color = plots.scaling_color(scaling)
            curve = _mean_over_seeds(rows, [x], "test_acc")
            ax.plot(curve[x], 100 * curve["test_acc"], marker="o", markersize=3, color=color)
            full = rows.drop_duplicates("run_id")["full_test_acc"].mean()
            ax.axhline(100 * full, color=color, linestyle="--", linewidth=1)
        ax.set_title(f"n={depth}{title_suffix}")
        ax.set_xlabel(xlabel)
    axes[0, 0].set_ylabel("test accuracy (%)")
    handles = plots.scaling_handles(scalings)
    handles.append(Line2D([], [], color="0.3", linestyle="--", label="full model"))
    fig.legend(handles=handles, loc="outside right center")
    title = plots.settings_title(frame, ["dataset", "arch", "width"])
    fig.suptitle(f"{title}; trained runs that did not diverge")
    return fig


@plots.styled
def truncated_accuracy_figure(truncated_accuracy):
    """Claim C5: accuracy of the head on x₀ + Σ_{k≤K} P_k vs K: the order a trained
    network needs."""
    return _accuracy_by_depth(truncated_accuracy, "order", "", "highest path order K kept")


@plots.styled
def lesion_figure(lesion):
    """Veit et al.'s lesion study: accuracy with one module deleted vs its position."""
    return _accuracy_by_depth(lesion, "position", ", one module deleted", "module position l/(n−1)")


def read_table(path):
    """A results/expansion table; scalings as canonical text, even when all are fixed λ."""
    table = pd.read_csv(path, dtype={"scaling": str})
    if "scaling" in table:
        table["scaling"] = table["scaling"].map(scaling_name)
    return table
