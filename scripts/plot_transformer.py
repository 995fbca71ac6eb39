"""Rules plot_transformer_*: the transformer tables -> results/figures/transformer_*.{pdf,png}.

The rule's named inputs (other than ``lib``) are the figure function's arguments."""

import logging
from pathlib import Path

from resdepth import expansion_plots, jobs, plots, transformer_plots

jobs.log_to(snakemake.log[0])
tables = {
    name: expansion_plots.read_table(path)
    for name, path in snakemake.input.items()
    if name != "lib"
}
figure = getattr(transformer_plots, f"{snakemake.params.figure}_transformer_figure")(**tables)
written = plots.save_figure(figure, Path(snakemake.output.pdf).with_suffix(""))
logging.info("%s -> %s", ", ".join(tables), ", ".join(map(str, written)))
