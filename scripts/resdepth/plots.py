"""Figures of the pipeline: init explosion (C2), accuracy vs depth and training curves (C3)
(the λ sweep's, C4, are in capacity_plots).

Every figure names scalings with ``scalings.scaling_label`` and colours them with
``scaling_color``, so one scaling looks the same everywhere. Figures are written as
PDF + PNG with fixed metadata, so re-rendering the same data gives identical bytes.
"""

import functools
import math
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib import colormaps
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator

from resdepth import aggregate
from resdepth.scalings import NAMED_SCALINGS, parse_scaling, scaling_label, sorted_scalings

#: Named scalings take fixed colours of seaborn's colour-blind palette (vermilion, blue,
#: green, pink, tan: distinct from each other and from the greys of fixed λ).
_NAMED_COLORS = dict(
    zip(NAMED_SCALINGS, [sns.color_palette("colorblind")[i] for i in (3, 0, 2, 4, 5)], strict=True)
)
#: Fixed λ values are shades of grey, darker for larger λ over this log10 range.
_FIXED_LOG10_RANGE = (-3.0, 1.0)

#: Marker for diverged runs: they have no accuracy, so it sits at the bottom of the axes.
DIVERGED_MARKER = {"marker": "x", "s": 40, "linewidths": 1.5, "zorder": 5, "clip_on": False}


def scaling_color(scaling):
    """The colour of a scaling in every figure; depends on that scaling alone."""
    scaling = parse_scaling(scaling)
    if not isinstance(scaling, float):
        return _NAMED_COLORS[scaling]
    low, high = _FIXED_LOG10_RANGE
    position = min(max((math.log10(scaling) - low) / (high - low), 0.0), 1.0)
    return colormaps["Greys"](0.35 + 0.6 * position)


def hue_order_and_palette(scalings):
    """Labels in table order and a label -> colour map, for seaborn's hue."""
    ordered = sorted_scalings(scalings)
    labels = [scaling_label(s) for s in ordered]
    return labels, {scaling_label(s): scaling_color(s) for s in ordered}


def scaling_handles(scalings):
    """Legend entries, one coloured line per scaling, for figure-level legends."""
    labels, palette = hue_order_and_palette(scalings)
    return [Line2D([], [], color=palette[label], marker="o", label=label) for label in labels]


def add_settings_and_legend(fig, frame, varying, scalings, diverged_label):
    """Title a run figure with the settings all its panels share; legend on the right.

    The legend has one entry per scaling and one for the diverged-run marker.
    """
    constant = [s for s in aggregate.SETTINGS if s not in varying]
    fig.suptitle(settings_title(frame, constant))
    handles = scaling_handles(scalings)
    handles.append(Line2D([], [], color="0.3", marker="x", linestyle="", label=diverged_label))
    fig.legend(handles=handles, loc="outside right center")


def styled(figure_function):
    """Draw the whole figure in the project's seaborn style, leaving global rcParams alone."""

    @functools.wraps(figure_function)
    def wrapper(*args, **kwargs):
        style = {**sns.axes_style("whitegrid"), **sns.plotting_context("paper", font_scale=1.2)}
        with plt.rc_context(style):
            return figure_function(*args, **kwargs)

    return wrapper


def new_figure(nrows=1, ncols=1, width=5.5, height=4.0, **subplot_options):
    """A constrained-layout figure with a 2-D array of axes."""
    return plt.subplots(
        nrows,
        ncols,
        figsize=(width, height),
        squeeze=False,
        layout="constrained",
        **subplot_options,
    )


def save_figure(fig, stem_path):
    """Write ``<stem>.pdf`` and ``<stem>.png`` and close the figure.

    The PDF creation date and the PNG software tag are left out, so the bytes depend
    only on the data and the library versions.
    """
    stem = Path(stem_path)
    stem.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(f"{stem}.pdf", metadata={"CreationDate": None})
    fig.savefig(f"{stem}.png", dpi=150, metadata={"Software": None})
    plt.close(fig)
    return Path(f"{stem}.pdf"), Path(f"{stem}.png")


@styled
def no_data_figure(title, reason):
    """A figure that says why there is nothing to draw (e.g. every run diverged): the
    pipeline completes, and the report shows the reason where the plot would be."""
    fig, axes = new_figure()
    axes[0, 0].set_axis_off()
    axes[0, 0].text(0.5, 0.5, textwrap.fill(reason, 40), ha="center", va="center")
    fig.suptitle(title)
    return fig


def settings_title(frame, settings, width=60):
    """``lr=0.05, width=64``: the values of ``settings`` shared by ``frame``'s rows,
    wrapped to lines of at most ``width`` characters."""
    first = frame.iloc[0]
    text = ", ".join(f"{s}={aggregate.format_value(first[s])}" for s in settings)
    return textwrap.fill(text, width)


#: The zoomed panel of the init-norm figure spans ‖x_n‖/‖x_0‖ in [10^-0.5, 10^2.5].
INIT_NORM_ZOOM_LOG10 = (-0.5, 2.5)
#: Tick values of the zoomed panel (a 1-2-5 log scale).
INIT_NORM_ZOOM_TICKS = (0.5, 1, 2, 5, 10, 20, 50, 100, 200)


_SUPERSCRIPTS = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def power_of_ten(exponent):
    """``10⁵⁰`` for 50: plain text, much faster to lay out than mathtext."""
    return "10" + str(round(exponent)).translate(_SUPERSCRIPTS)


@styled
def init_norms_figure(norms):
    """Claim C2: ‖x_n‖/‖x_0‖ at initialisation vs depth n, log-log, per scaling.

    Left: the full range, where λ=1 explodes. Right: the same curves zoomed on norms
    that stay bounded, to tell the bounded scalings apart. Lines are the mean of log10
    over seeds (a geometric mean), bands span min to max. Plotting log10 keeps towers
    whose norm overflows float64 on the axes.
    """
    settings = ["dataset", "arch", "width"]
    if len(norms[settings].drop_duplicates()) != 1:
        raise ValueError(
            "init_norms.csv mixes several (dataset, arch, width) settings; expected one"
        )
    hue_order, palette = hue_order_and_palette(norms["scaling"])
    norms = norms.assign(label=norms["scaling"].map(scaling_label))
    fig, axes = new_figure(ncols=2, width=10.0, height=4.0)
    full, zoom = axes[0]
    for ax in (full, zoom):
        sns.lineplot(
            data=norms,
            x="depth",
            y="log10_rel_norm",
            hue="label",
            hue_order=hue_order,
            palette=palette,
            estimator="mean",
            errorbar=("pi", 100),
            marker="o",
            legend=False,
            ax=ax,
        )
        ax.axhline(0.0, color="0.3", linestyle="--", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlabel("depth n (residual modules)")
    full.yaxis.set_major_locator(MaxNLocator(integer=True))
    full.yaxis.set_major_formatter(FuncFormatter(lambda value, _: power_of_ten(value)))
    full.set_ylabel("‖x_n‖ / ‖x_0‖ at initialisation")
    full.set_title("all scalings")
    zoom.set_ylim(*INIT_NORM_ZOOM_LOG10)
    zoom.set_yticks(
        [math.log10(t) for t in INIT_NORM_ZOOM_TICKS], [f"{t:g}" for t in INIT_NORM_ZOOM_TICKS]
    )
    zoom.set_ylabel("")
    zoom.set_title("zoom on bounded norms")
    fig.suptitle(settings_title(norms, settings))
    handles = scaling_handles(norms["scaling"])
    handles.append(Line2D([], [], color="0.3", linestyle="--", label="no growth"))
    fig.legend(handles=handles, loc="outside right center")
    return fig


@styled
def accuracy_vs_depth_figure(runs):
    """Claim C3: final test accuracy vs depth per scaling, mean ± std over seeds.

    Diverged runs have no accuracy: a cell with any is an 'x' at the bottom of the axes,
    labelled diverged/seeds. One panel per combination of the other settings that vary.
    """
    if not (runs["status"] == "ok").any():
        title = settings_title(runs, aggregate.SETTINGS)
        return no_data_figure(title, f"No trained run: all {len(runs)} runs diverged.")
    summary = aggregate.summarise_accuracy(runs)
    varying = aggregate.varying_settings(runs)
    scalings = sorted_scalings(runs["scaling"])
    panels = list(summary.groupby(varying, sort=False)) if varying else [(None, summary)]
    fig, axes = new_figure(ncols=len(panels), width=3 + 4 * len(panels), height=4.0, sharey=True)
    for ax, (_, panel) in zip(axes[0], panels, strict=True):
        for index, scaling in enumerate(scalings):
            color = scaling_color(scaling)
            # Spread the scalings a little along the log depth axis so bars do not overlap.
            shift = 10 ** (0.04 * (index - (len(scalings) - 1) / 2))
            cells = panel[(panel["scaling"] == scaling) & (panel["n_ok"] > 0)]
            ax.errorbar(
                cells["depth"] * shift,
                100 * cells["test_acc_mean"],
                yerr=100 * cells["test_acc_std"].fillna(0.0),
                color=color,
                marker="o",
                capsize=3,
                label=scaling_label(scaling),
            )
            diverged = panel[(panel["scaling"] == scaling) & (panel["n_diverged"] > 0)]
            ax.scatter(
                diverged["depth"] * shift,
                [0.0] * len(diverged),
                color=color,
                transform=ax.get_xaxis_transform(),
                **DIVERGED_MARKER,
            )
            for depth, n_diverged, n_seeds in diverged[["depth", "n_diverged", "n_seeds"]].values:
                ax.annotate(
                    f"{n_diverged}/{n_seeds}",
                    (depth * shift, 0.0),
                    xycoords=ax.get_xaxis_transform(),
                    xytext=(0, 6 + 9 * (index % 2)),  # staggered: neighbours do not overlap
                    textcoords="offset points",
                    ha="center",
                    fontsize="x-small",
                    color=color,
                )
        ax.set_xscale("log")
        depths = sorted(panel["depth"].unique())
        ax.set_xticks(depths, [str(d) for d in depths])
        ax.minorticks_off()
        ax.set_xlabel("depth n (residual modules)")
        if varying:
            ax.set_title(settings_title(panel, varying))
    axes[0, 0].set_ylabel("test accuracy (%)")
    if summary["n_diverged"].any():
        # A strip below the lowest accuracy for the diverged markers and their counts.
        low, high = axes[0, 0].get_ylim()
        axes[0, 0].set_ylim(low - 0.15 * (high - low), high)
    add_settings_and_legend(fig, runs, varying, scalings, "diverged (runs/seeds)")
    return fig


def load_histories(history_paths, runs):
    """Concatenate history.csv files with their run's settings (run id = folder name)."""
    known, frames = set(runs["run_id"]), []
    for path in history_paths:
        run_id = Path(path).parent.name
        if run_id not in known:
            raise ValueError(f"{path}: run {run_id!r} is not in runs.csv")
        # The schedule's per-epoch lr is renamed so it does not clash with the run's lr.
        history = pd.read_csv(path).rename(columns={"lr": "epoch_lr"})
        frames.append(history.assign(run_id=run_id))
    if not frames:
        raise ValueError("no history.csv files given")
    run_columns = ["run_id", *aggregate.SETTINGS, "depth", "scaling", "seed", "status"]
    return pd.concat(frames, ignore_index=True).merge(runs[run_columns], on="run_id")


#: Rows of the training-curve figure: (history column, axis label, y scale, factor).
CURVE_METRICS = (
    ("test_acc", "test accuracy (%)", "linear", 100.0),
    ("train_loss", "train loss", "log", 1.0),
)


@styled
def training_curves_figure(runs, histories):
    """Every run's test accuracy and train loss per epoch; columns are depths.

    One line per run (seeds are not averaged: a diverged seed's curve stops early and
    its last epoch is marked with an 'x'). A run that diverged within its first epoch
    has no curve; the panel lists those runs instead, in their scaling's colour. With
    several settings varying, each combination gets its own pair of rows.
    """
    if histories["test_acc"].isna().all():  # epoch 0 (GC at init) has no accuracy
        title = settings_title(runs, aggregate.SETTINGS)
        reason = f"No curve: all {len(runs)} runs diverged in their first epoch."
        return no_data_figure(title, reason)
    varying = aggregate.varying_settings(runs)
    groups = list(runs.groupby(varying, sort=False)) if varying else [(None, runs)]
    depths = sorted(runs["depth"].unique())
    scalings = sorted_scalings(runs["scaling"])
    hue_order, palette = hue_order_and_palette(scalings)
    histories = histories.assign(
        label=histories["scaling"].map(scaling_label),
        **{m: histories[m] * factor for m, _, _, factor in CURVE_METRICS},
    )
    nrows = len(groups) * len(CURVE_METRICS)
    fig, axes = new_figure(
        nrows, len(depths), width=2 + 3 * len(depths), height=2.6 * nrows, sharex=True, sharey="row"
    )
    for group_index, (_, group) in enumerate(groups):
        first_row = group_index * len(CURVE_METRICS)
        for column, depth in enumerate(depths):
            cell_runs = group[group["depth"] == depth]
            curves = histories[histories["run_id"].isin(cell_runs["run_id"])]
            for metric_index, (metric, ylabel, yscale, _) in enumerate(CURVE_METRICS):
                ax = axes[first_row + metric_index, column]
                if len(curves):
                    sns.lineplot(
                        data=curves,
                        x="epoch",
                        y=metric,
                        hue="label",
                        hue_order=hue_order,
                        palette=palette,
                        units="seed",
                        estimator=None,
                        legend=False,
                        ax=ax,
                    )
                last = curves[curves["status"] == "diverged"].groupby("run_id").tail(1)
                ax.scatter(
                    last["epoch"], last[metric], color=list(last["label"].map(palette)), marker="x"
                )
                ax.set_yscale(yscale)
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                ax.set_xlabel("epoch" if first_row + metric_index == nrows - 1 else "")
                ax.set_ylabel(ylabel if column == 0 else "")
            title = f"n={depth}"
            if varying:
                title += ", " + settings_title(group, varying)
            axes[first_row, column].set_title(title)
            without_curve = cell_runs[~cell_runs["run_id"].isin(curves["run_id"])]
            list_runs_without_curve(axes[first_row, column], cell_runs, without_curve)
    add_settings_and_legend(fig, runs, varying, scalings, "diverged (last epoch)")
    return fig


def list_runs_without_curve(ax, cell_runs, without_curve):
    """Write ``λ=1: 2/2 diverged in epoch 1`` lines in the lower right of ``ax``."""
    for line, (scaling, missing) in enumerate(without_curve.groupby("scaling", sort=False)):
        n_runs = (cell_runs["scaling"] == scaling).sum()
        ax.text(
            0.97,
            0.05 + 0.1 * line,
            f"{scaling_label(scaling)}: {len(missing)}/{n_runs} diverged in epoch 1",
            transform=ax.transAxes,
            ha="right",
            va="bottom",
            color=scaling_color(scaling),
            fontsize="small",
        )
