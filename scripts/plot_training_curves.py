"""Rule plot_training_curves: runs.csv + every history.csv -> figures/training_curves.{pdf,png}."""

import logging
from pathlib import Path

from resdepth import aggregate, jobs, plots

jobs.log_to(snakemake.log[0])
runs = aggregate.read_runs_csv(snakemake.input.runs)
jobs.verify_run_files(snakemake.input.histories)
histories = plots.load_histories(snakemake.input.histories, runs)
written = plots.save_figure(
    plots.training_curves_figure(runs, histories), Path(snakemake.output.pdf).with_suffix("")
)
logging.info("%d epochs of %d runs -> %s", len(histories), len(runs), ", ".join(map(str, written)))
