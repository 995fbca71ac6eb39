"""Rule plot_init_norms: results/init_norms.csv -> results/figures/init_norms.{pdf,png}."""

import logging
from pathlib import Path

import pandas as pd

from resdepth import jobs, plots

jobs.log_to(snakemake.log[0])
norms = pd.read_csv(snakemake.input.norms)
written = plots.save_figure(
    plots.init_norms_figure(norms), Path(snakemake.output.pdf).with_suffix("")
)
logging.info("%d rows -> %s", len(norms), ", ".join(map(str, written)))
