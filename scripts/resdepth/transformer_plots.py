"""Figures of the transformer studies (issue 20; claims C1, C2, C6 at initialisation), in
the style of ``plots``: scalings keep their colours, pre-LN towers are solid lines and
norm-free ones dashed, curves are means over seeds.
"""

import math

import numpy as np
import seaborn as sns
from matplotlib.lines import Line2D

from resdepth import plots, scalings

#: Line style of each ``norm`` (arch_options.transformer.norm) in every figure.
NORM_STYLES = {"pre_ln": "-", "none": "--"}
NORM_LABELS = {"pre_ln": "pre-LN", "none": "norm-free"}


def scaling_label(scaling):
    """A scaling's legend name on transformers: ``bn`` is the pre-LN tower at λ = 1 there."""
    return "pre-LN, λ=1" if scaling == "bn" else scalings.scaling_label(scaling)


def _scaling_handles(names):
    """One coloured line per scaling, in table order, with transformer names."""
    return [
        Line2D([], [], color=plots.scaling_color(s), marker="o", label=scaling_label(s))
        for s in scalings.sorted_scalings(names)
    ]


def _norm_handles(norms):
    return [
        Line2D([], [], color="0.3", linestyle=NORM_STYLES[n], label=NORM_LABELS[n])
        for n in NORM_STYLES
        if n in set(norms)
    ]


@plots.styled
def init_norms_transformer_figure(norms):
    """Claim C2 on transformers vs the number of modules n, per scaling (colour) and norm
    (line style), means over seeds: ‖x_n‖/‖x_0‖ in log10 (left: norm-free λ = 1 explodes)
    and zoomed on log-log axes (middle: pre-LN λ = 1 grows like a power of n, the others
    stay near 1), and the mean cosine similarity between the token vectors of x_n (right;
    Noci et al. 2022's rank-collapse measure; dotted: the embedding's own)."""
    fig, axes = plots.new_figure(ncols=3, width=15.0, height=4.2)
    growth, zoom, cosine = axes[0]
    for (norm, scaling), rows in norms.groupby(["norm", "scaling"], sort=True):
        curve = rows.groupby("modules")[["log10_rel_norm", "token_cosine"]].mean()
        style = dict(color=plots.scaling_color(scaling), linestyle=NORM_STYLES[norm], marker="o")
        growth.plot(curve.index, curve["log10_rel_norm"], **style)
        zoom.plot(curve.index, 10 ** curve["log10_rel_norm"], **style)
        cosine.plot(curve.index, curve["token_cosine"], **style)
    stem = norms.groupby("modules")["token_cosine_stem"].mean()
    cosine.plot(stem.index, stem.values, color="0.5", linestyle=":")
    growth.axhline(0.0, color="0.3", linewidth=0.8)
    zoom.axhline(1.0, color="0.3", linewidth=0.8)
    zoom.set_yscale("log")
    zoom.set_ylim(0.8, 40)
    for ax in (growth, zoom, cosine):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("residual modules n (2 per block)")
    growth.set_ylabel("log10 ‖x_n‖ / ‖x_0‖ at initialisation")
    zoom.set_ylabel("‖x_n‖ / ‖x_0‖ (zoom)")
    cosine.set_ylabel("mean token cosine similarity of x_n")
    cosine.set_ylim(-0.05, 1.05)
    fig.suptitle(plots.settings_title(norms, ["dataset", "arch", "width"]))
    handles = _scaling_handles(norms["scaling"]) + _norm_handles(norms["norm"])
    handles.append(Line2D([], [], color="0.5", linestyle=":", label="embedding x₀"))
    fig.legend(handles=handles, loc="outside right center")
    return fig


@plots.styled
def truncation_transformer_figure(truncation, slopes, radius=None):
    """Claim C1 on transformers: ‖x_n(λ) − Σ_{k≤K} λ^k T_k‖/‖x_0‖ vs a common λ
    (log-log), one panel per norm, one colour per order K, means over seeds. Legends give
    the fitted slope (mean over seeds; ideal K+1), the shaded band the fit range; vertical
    lines mark λ = 1/n and 1/√n and, when the radius table has this depth, the estimated
    radius of convergence ρ̂ (ratio test)."""
    norms = [n for n in NORM_STYLES if n in set(truncation["norm"])]
    fig, axes = plots.new_figure(ncols=len(norms), width=5.5 * len(norms), height=4.4)
    orders = sorted(truncation["order"].unique())
    colors = dict(zip(orders, sns.color_palette("colorblind", len(orders)), strict=True))
    modules = int(truncation["modules"].iloc[0])
    for ax, norm in zip(axes[0], norms, strict=True):
        rows, fitted = truncation[truncation["norm"] == norm], slopes[slopes["norm"] == norm]
        for order, color in colors.items():
            curve = rows[rows["order"] == order].groupby("lambda")["rel_error"].mean()
            slope = fitted.loc[fitted["order"] == order, "slope"].mean()
            ax.plot(
                curve.index,
                curve.values,
                marker="o",
                markersize=3,
                color=color,
                label=f"K={order}: slope {slope:.2f} (ideal {order + 1})",
            )
        if fitted["n_points"].sum():
            ax.axvspan(fitted["fit_lambda_min"].min(), fitted["fit_lambda_max"].max(), color="0.92")
        marks = {"1/n": 1 / modules, "1/√n": 1 / math.sqrt(modules)}
        rho = _radius_at(radius, norm, modules)
        if rho is not None:
            marks["ρ̂"] = rho
        for (name, lam), style in zip(marks.items(), (":", "-.", "-"), strict=False):
            ax.axvline(lam, color="0.4", linestyle=style, linewidth=1)
            ax.annotate(name, (lam, 0.02), xycoords=("data", "axes fraction"), fontsize="small")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("λ (every module)")
        ax.set_title(f"{NORM_LABELS[norm]}, n = {modules} modules: Taylor at λ = 0")
        ax.legend(loc="upper left", fontsize="small")
    axes[0, 0].set_ylabel("‖x_n − truncation‖ / ‖x_0‖")
    fig.suptitle(plots.settings_title(truncation, ["dataset", "arch", "activation", "width"]))
    return fig


def _radius_at(radius, norm, modules):
    """Mean ratio-test radius for this norm and depth, or None."""
    if radius is None:
        return None
    rows = radius[(radius["norm"] == norm) & (radius["modules"] == modules)]
    return float(rows["rho_ratio"].mean()) if len(rows) else None


@plots.styled
def radius_transformer_figure(radius):
    """Claim C6: the radius of convergence ρ̂ of the λ-series of fresh transformers,
    times √n (left) and times n (right), vs the number of modules n; ratio test (circles)
    and root test (squares) at the study's order K, bars the size of their drift from
    order K − 2, one line per norm, means over seeds. λ = 1/√n lies inside the series'
    disc where ρ̂√n > 1, λ = 1/n where ρ̂·n > 1, λ = 1 where ρ̂ > 1."""
    fig, axes = plots.new_figure(ncols=2, width=11.0, height=4.2)
    for norm in [n for n in NORM_STYLES if n in set(radius["norm"])]:
        rows = radius[radius["norm"] == norm]
        for test, marker, color in (("rho_ratio", "o", "C0"), ("rho_root", "s", "C1")):
            mean = rows.groupby("modules")[[test, f"{test}_drift"]].mean()
            n = mean.index.to_numpy(dtype=float)
            for ax, power in zip(axes[0], (0.5, 1.0), strict=True):
                value = mean[test].to_numpy() * n**power
                ax.errorbar(
                    n,
                    value,
                    yerr=np.abs(mean[f"{test}_drift"].to_numpy()) * value,
                    marker=marker,
                    linestyle=NORM_STYLES[norm],
                    color=color,
                    capsize=3,
                )
    for ax, name in zip(axes[0], ("ρ̂ · √n", "ρ̂ · n"), strict=True):
        ax.axhline(1.0, color="0.3", linewidth=0.8)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("residual modules n (2 per block)")
        ax.set_ylabel(name)
    order = int(radius["order"].iloc[0])
    fig.suptitle(
        plots.settings_title(radius, ["dataset", "arch", "width"])
        + f" — order {order} (bars: drift from order {order - 2})"
    )
    handles = _norm_handles(radius["norm"]) + [
        Line2D([], [], color="C0", marker="o", linestyle="", label="ratio test"),
        Line2D([], [], color="C1", marker="s", linestyle="", label="root test"),
    ]
    fig.legend(handles=handles, loc="outside right center")
    return fig


@plots.styled
def truncated_accuracy_transformer_figure(truncated_accuracy):
    """Claims C5 and C7 on trained transformers: test accuracy of the head on the Taylor
    truncation Σ_{k≤K} λ^k T_k (solid) and on the frozen-path truncation x_0 + Σ_{k≤K} P_k
    (dashed) vs K, one panel per depth (blocks), one colour per scaling, means over seeds;
    dotted: the full network per scaling. Order 1 is an ensemble of
    one-module models, which cannot bind a value to its key (C7); past the radius of
    convergence the Taylor curve falls again as K grows."""
    table = truncated_accuracy[truncated_accuracy["arch"] == "transformer"]
    depths = sorted(table["depth"].unique())
    fig, axes = plots.new_figure(ncols=len(depths), width=4.6 * len(depths), height=4.2)
    for ax, depth in zip(axes[0], depths, strict=True):
        rows = table[table["depth"] == depth]
        for scaling, by_scaling in rows.groupby("scaling", sort=True):
            color = plots.scaling_color(scaling)
            curve = by_scaling.groupby("order")[["taylor_test_acc", "test_acc"]].mean()
            ax.plot(curve.index, curve["taylor_test_acc"], color=color, marker="o")
            ax.plot(curve.index, curve["test_acc"], color=color, linestyle="--")
            ax.axhline(by_scaling["full_test_acc"].mean(), color=color, linestyle=":")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("highest order K kept")
        ax.set_title(f"{depth} blocks ({2 * depth} modules)")
    axes[0, 0].set_ylabel("test accuracy of the truncation")
    fig.suptitle(plots.settings_title(table, ["dataset", "arch", "width"]))
    handles = _scaling_handles(table["scaling"]) + [
        Line2D([], [], color="0.3", marker="o", label="Taylor at λ = 0"),
        Line2D([], [], color="0.3", linestyle="--", label="frozen paths"),
        Line2D([], [], color="0.3", linestyle=":", label="full network"),
    ]
    fig.legend(handles=handles, loc="outside right center")
    return fig


@plots.styled
def orders_transformer_figure(orders):
    """Claim C5 on trained transformers: ‖λ^k T_k‖ / ‖x_n − x_0‖ (solid) and the share
    of it that lives in the moving attention patterns, ‖D_k‖ / ‖x_n − x_0‖ with D_k =
    λ^k T_k − P_k (dashed), vs order k ≥ 1 after training, one panel per depth, one colour
    per scaling, means over seeds; the legend gives each scaling's radius of convergence
    over its mean λ (ratio test at the highest order: above 1, the series converges at the
    network's λ)."""
    table = orders[
        (orders["arch"] == "transformer")
        & (orders["stage"] == "trained")
        & (orders["decomposition"] == "taylor")
        & (orders["order"] >= 1)
    ]
    depths = sorted(table["depth"].unique())
    fig, axes = plots.new_figure(ncols=len(depths), width=4.6 * len(depths), height=4.2)
    for ax, depth in zip(axes[0], depths, strict=True):
        rows = table[table["depth"] == depth]
        for scaling, by_scaling in rows.groupby("scaling", sort=True):
            color = plots.scaling_color(scaling)
            curve = by_scaling.groupby("order")[["rel_norm", "composition_rel_norm"]].mean()
            ratio = (by_scaling["rho_ratio"] / by_scaling["lambda_mean"]).mean()
            label = f"{scaling_label(scaling)}: ρ̂/λ̄ {ratio:.2g}"
            ax.plot(curve.index, curve["rel_norm"], color=color, marker="o", label=label)
            ax.plot(curve.index, curve["composition_rel_norm"], color=color, linestyle="--")
        ax.set_yscale("log")
        ax.set_xlabel("order k")
        ax.set_title(f"{depth} blocks ({2 * depth} modules), trained")
        ax.legend(fontsize="x-small", loc="lower left")
    axes[0, 0].set_ylabel("‖λ^k T_k‖ (solid), ‖D_k‖ (dashed) / ‖x_n − x_0‖")
    fig.suptitle(plots.settings_title(table, ["dataset", "arch", "width"]))
    return fig
