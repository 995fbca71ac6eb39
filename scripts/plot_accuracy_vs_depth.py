"""Rule plot_accuracy_vs_depth: results/runs.csv -> results/figures/accuracy_vs_depth.{pdf,png}."""

import logging
from pathlib import Path

from resdepth import aggregate, jobs, plots

jobs.log_to(snakemake.log[0])
runs = aggregate.read_runs_csv(snakemake.input.runs)
written = plots.save_figure(
    plots.accuracy_vs_depth_figure(runs), Path(snakemake.output.pdf).with_suffix("")
)
logging.info("%d runs -> %s", len(runs), ", ".join(map(str, written)))
