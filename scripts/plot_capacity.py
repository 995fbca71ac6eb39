"""Rule plot_capacity: capacity/gc_vs_lambda.csv + gc_history.csv -> figures/capacity_*."""

import logging
from pathlib import Path

import pandas as pd

from resdepth import capacity_plots, jobs, plots

jobs.log_to(snakemake.log[0])
sweep = pd.read_csv(snakemake.input.sweep, dtype={"scaling": str})
history = pd.read_csv(snakemake.input.history, dtype={"scaling": str})
if (sweep["status"] == "ok").any():
    figures = {
        "gc": capacity_plots.capacity_gc_figure(sweep),
        "accuracy": capacity_plots.capacity_accuracy_figure(sweep),
        "training": capacity_plots.capacity_training_figure(sweep, history),
    }
else:  # nothing to draw: each figure says why
    title = plots.settings_title(sweep, capacity_plots.SWEEP_SETTINGS)
    reason = f"No trained run: all {len(sweep)} runs of the λ sweep diverged."
    figures = {name: plots.no_data_figure(title, reason) for name in ("gc", "accuracy", "training")}
for name, fig in figures.items():
    written = plots.save_figure(fig, Path(snakemake.output[f"{name}_pdf"]).with_suffix(""))
    logging.info("%s -> %s", name, ", ".join(map(str, written)))
