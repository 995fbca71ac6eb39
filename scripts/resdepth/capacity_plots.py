"""Figures of claim C4: GC and test accuracy across the λ sweep, GC through training.

The unclipped runs, C4's evidence, are drawn as in the other figures (plots); the
stability limit, the clipped runs past it and the runs whose GC says little are drawn
apart, so a reader sees what the verdict rests on and what it does not.
"""

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm
from matplotlib.ticker import MaxNLocator

from resdepth import capacity
from resdepth.plots import (
    DIVERGED_MARKER,
    new_figure,
    scaling_color,
    settings_title,
    styled,
)
from resdepth.scalings import is_fixed_lambda, parse_scaling, scaling_label, sorted_scalings

#: The settings a λ-sweep figure is titled with: the sweep fixes every one of them.
SWEEP_SETTINGS = list(capacity.SWEEP_SETTINGS)
#: How the clipped runs look: apart from the unclipped curve that C4's test reads.
CLIPPED_STYLE = {"color": "tab:orange", "marker": "s", "linestyle": "--"}
#: Runs whose GC says little about a learned function (capacity.sweep_tables' flags).
FLAGGED_MARKER = {"marker": "o", "s": 110, "facecolors": "none", "edgecolors": "tab:red"}
FLAGGED_LABEL = "flagged: GC highest at init, or train loss > ln(classes)"


def centre_and_range(frame, column, by, geometric):
    """Mean of ``column`` per value of ``by`` (geometric mean if ``geometric``), min, max."""
    groups = frame.groupby(by)[column]
    centre = 10 ** np.log10(frame[column]).groupby(frame[by]).mean() if geometric else groups.mean()
    return centre, groups.min(), groups.max()


def clip_text(sweep):
    """How the sweep's clipped runs were clipped, e.g. "gradient norm clipped at 1"."""
    clips = sorted(sweep["grad_clip"].dropna().unique()) if "grad_clip" in sweep else []
    return "gradient norm clipped at " + ", ".join(f"{c:g}" for c in clips) if clips else ""


def lambda_curve(ax, sweep, column, geometric):
    """``column`` against λ (log axis, spanning the whole sweep).

    The unclipped fixed-λ runs (named ones like λ=1/n included, at their λ) are claim
    C4's evidence: a line through the mean over seeds with a min-to-max band, the named
    ones also marked in their colour, a diverged run an 'x' on the bottom edge, and the
    stability limit (the smallest λ with a diverged seed) a dashed vertical line.
    Clipped runs, which train past the limit only because their gradients are clipped,
    are a separate orange dashed curve. Flagged runs are circled in red. bn and skipinit
    have no fixed λ: dotted horizontal lines at their mean.
    """
    clipped = sweep["grad_clip"].map(capacity.is_clipped)
    unclipped, clipped_runs = sweep[~clipped], sweep[clipped]
    fixed_lambdas = sweep.loc[sweep["scaling"].map(is_fixed_lambda), "lambda"]
    ax.set_xlim(fixed_lambdas.min() / 1.2, fixed_lambdas.max() * 1.2)  # diverged λ too
    finished = unclipped[unclipped[column].notna()]
    fixed = finished["scaling"].map(is_fixed_lambda)
    centre, low, high = centre_and_range(finished[fixed], column, "lambda", geometric)
    ax.plot(centre.index, centre, color="0.2", marker="o", label="unclipped: mean over seeds")
    ax.fill_between(
        centre.index, low, high, color="0.2", alpha=0.2, linewidth=0, label="unclipped: seed range"
    )
    diverged = unclipped[unclipped["status"] != "ok"]
    ax.scatter(
        diverged["lambda"],
        [0.0] * len(diverged),
        color="0.3",
        transform=ax.get_xaxis_transform(),
        label="diverged run (unclipped)",
        **DIVERGED_MARKER,
    )
    limit = capacity.stability_limit(sweep)["limit_lambda"]
    if limit is not None:
        ax.axvline(limit, color="tab:red", linestyle="--", linewidth=1, label="stability limit")
    for scaling in sorted_scalings(finished["scaling"]):
        if isinstance(parse_scaling(scaling), float):
            continue
        runs = finished[finished["scaling"] == scaling]
        color, label = scaling_color(scaling), scaling_label(scaling)
        if is_fixed_lambda(scaling):
            centre, _, _ = centre_and_range(runs, column, "lambda", geometric)
            ax.plot(centre.index, centre, color=color, marker="D", linestyle="", label=label)
        else:
            centre, _, _ = centre_and_range(runs, column, "scaling", geometric)
            ax.axhline(centre.iloc[0], color=color, linestyle=":", label=label)
    clipped_finished = clipped_runs[clipped_runs[column].notna()]
    if len(clipped_finished):
        centre, _, _ = centre_and_range(clipped_finished, column, "lambda", geometric)
        label = f"{clip_text(clipped_runs)}: not in C4's test"
        ax.plot(centre.index, centre, label=label, **CLIPPED_STYLE)
    flags = ["flag_gc_peak_at_init", "flag_train_loss_above_chance"]
    if set(flags) <= set(sweep):
        rows = sweep[column].notna() & sweep[flags].fillna(False).astype(bool).any(axis=1)
        flagged = sweep[rows]
        if len(flagged):
            ax.scatter(flagged["lambda"], flagged[column], label=FLAGGED_LABEL, **FLAGGED_MARKER)
    ax.set_xscale("log")
    ax.set_xlabel("λ (scale of every residual branch)")
    if geometric:
        ax.set_yscale("log")


def sweep_title(sweep):
    """The settings title, with what is clipped and what is not."""
    clipped = clip_text(sweep)
    what = (
        f"unclipped runs decide C4; {clipped} (orange) past the limit"
        if clipped
        else ("no run clipped")
    )
    return f"{settings_title(sweep, SWEEP_SETTINGS)}\n{what}"


GC_LABEL = "GC = mean ‖∂ logits / ∂x‖²"


@styled
def capacity_gc_figure(sweep):
    """Claim C4: GC against λ, at the end of training and at its peak during training.

    Lines are geometric means over seeds (GC spans orders of magnitude), bands span the
    seeds' min to max.
    """
    fig, axes = new_figure(ncols=2, width=11.0, height=4.3, sharey=True)
    panels = (("gc_final", "at the end of training"), ("gc_peak", "peak during training"))
    for ax, (column, title) in zip(axes[0], panels, strict=True):
        lambda_curve(ax, sweep, column, geometric=True)
        ax.set_title(title)
    axes[0, 0].set_ylabel(GC_LABEL)
    fig.suptitle(sweep_title(sweep))
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside right center")
    return fig


@styled
def capacity_accuracy_figure(sweep):
    """Final test accuracy against λ (mean over finished seeds, band min to max)."""
    fig, axes = new_figure(width=8.0, height=4.3)
    ax = axes[0, 0]
    lambda_curve(ax, sweep.assign(test_acc=100 * sweep["test_acc"]), "test_acc", geometric=False)
    ax.set_ylabel("test accuracy (%)")
    fig.suptitle(sweep_title(sweep))
    fig.legend(*ax.get_legend_handles_labels(), loc="outside right center")
    return fig


@styled
def capacity_training_figure(sweep, history):
    """GC through training of the unclipped runs that finished: one line per fixed λ
    (geometric mean over seeds) coloured by λ on a log scale; bn and skipinit dashed in
    their own colour. Diverged and clipped runs are left out (their GC at init is in
    gc_vs_lambda.csv)."""
    fig, axes = new_figure(width=8.0, height=4.0)
    ax = axes[0, 0]
    shown = sweep[(sweep["status"] == "ok") & ~sweep["grad_clip"].map(capacity.is_clipped)]
    history = history[history["run_id"].isin(shown["run_id"])]
    fixed = history["scaling"].map(is_fixed_lambda)
    norm = LogNorm(history.loc[fixed, "lambda"].min(), history.loc[fixed, "lambda"].max())
    lambda_colors = colormaps["viridis"]
    for lam, runs in history[fixed].groupby("lambda"):
        curve, _, _ = centre_and_range(runs, "gc", "epoch", geometric=True)
        ax.plot(curve.index, curve, color=lambda_colors(norm(lam)), marker=".")
    for scaling, runs in history[~fixed].groupby("scaling"):
        curve, _, _ = centre_and_range(runs, "gc", "epoch", geometric=True)
        label = scaling_label(scaling)
        ax.plot(curve.index, curve, color=scaling_color(scaling), linestyle="--", label=label)
    fig.colorbar(ScalarMappable(norm, lambda_colors), ax=ax, label="fixed λ")
    ax.set_yscale("log")
    ax.set_xlabel("epoch (0: initialisation)")
    ax.set_ylabel(GC_LABEL)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if (~fixed).any():
        ax.legend(loc="best", fontsize="small")
    left_out = len(sweep) - len(shown)
    title = settings_title(sweep, SWEEP_SETTINGS)
    note = f"unclipped runs; {left_out} diverged or clipped runs not shown"
    fig.suptitle(f"{title}\n{note}" if left_out else title)
    return fig
