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

from resdepth import plots
from resdepth.scalings import scaling_label, scaling_name, sorted_scalings


def _mean_over_seeds(frame, keys, value):
    """Mean of ``value`` per ``keys`` over seeds, ignoring NaN (undefined) entries."""
    return frame.groupby(keys, sort=True)[value].mean().reset_index()


def _depth_colors(depths):
    """Deeper towers darker: one shade of grey-blue per depth."""
    shades = np.linspace(0.35, 0.9, len(depths)) if len(depths) > 1 else [0.7]
    return {d: colormaps["Blues"](s) for d, s in zip(depths, shades, strict=True)}


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


def _prior_curve(panel, depth):
    """The binomial prior C(n,k)λ̄^k of one depth, matched to the data at order 1.

    Matched to the init curve, or to the trained one where init is undefined (SkipInit
    starts as the identity)."""
    for stage in ("init", "trained"):
        rows = panel[(panel["depth"] == depth) & (panel["stage"] == stage)]
        curve = _mean_over_seeds(rows, ["order"], "rel_norm").set_index("order")["rel_norm"]
        prior = _mean_over_seeds(rows, ["order"], "binomial_prior").set_index("order")
        prior = prior["binomial_prior"]
        if 1 in curve.index and math.isfinite(curve[1]) and prior.get(1, 0) > 0:
            return prior[prior.index >= 1] * curve[1] / prior[1]
    return None


@plots.styled
def orders_figure(orders):
    """Claim C5: ‖order-k term‖ / ‖x_n − x₀‖ vs k, one column per scaling, one row per
    decomposition; colour = depth, dashed = at initialisation, solid = trained, dotted =
    the binomial prior C(n,k)λ̄^k scaled to the order-1 point."""
    scalings = sorted_scalings(orders["scaling"])
    depths = sorted(orders["depth"].unique())
    colors = _depth_colors(depths)
    decompositions = ("path", "taylor")
    fig, axes = plots.new_figure(
        len(decompositions),
        len(scalings),
        width=2 + 3 * len(scalings),
        height=6.5,
        sharex=True,
        sharey="row",
    )
    terms = orders[orders["order"] >= 1]
    for row, decomposition in enumerate(decompositions):
        for col, scaling in enumerate(scalings):
            ax = axes[row, col]
            panel = terms[(terms["decomposition"] == decomposition) & (terms["scaling"] == scaling)]
            for depth in depths:
                for stage, style in (("init", "--"), ("trained", "-")):
                    rows = panel[(panel["depth"] == depth) & (panel["stage"] == stage)]
                    curve = _mean_over_seeds(rows, ["order"], "rel_norm").dropna()
                    ax.plot(
                        curve["order"],
                        curve["rel_norm"],
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
                    0.97,
                    f"no trained run (diverged): n={','.join(untrained)}",
                    transform=ax.transAxes,
                    ha="right",
                    va="top",
                    fontsize="small",
                    bbox={"facecolor": "white", "edgecolor": "0.8"},
                )
            ax.set_yscale("log")
            if row == 0:
                ax.set_title(scaling_label(scaling))
            if row == len(decompositions) - 1:
                ax.set_xlabel("order k")
            if col == 0:
                name = "path term P_k" if decomposition == "path" else "Taylor term λᵏT_k"
                ax.set_ylabel(f"‖{name}‖ / ‖x_n − x₀‖")
    handles = [Line2D([], [], color=colors[d], label=f"n={d}") for d in depths]
    handles += [
        Line2D([], [], color="0.3", linestyle="--", label="init"),
        Line2D([], [], color="0.3", linestyle="-", label="trained"),
        Line2D([], [], color="0.3", linestyle=":", label="C(n,k)λ̄ᵏ (scaled)"),
    ]
    fig.legend(handles=handles, loc="outside right center")
    fig.suptitle(plots.settings_title(orders, ["dataset", "arch", "width"]))
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
