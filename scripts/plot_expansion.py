"""Rules plot_expansion and plot_transformer: the expansion tables ->
results/figures/{expansion,transformer}_*.{pdf,png}.

The rule's named inputs (other than ``lib``) are the figure function's arguments;
``params.draw`` names the function, as ``module.function`` of the two figure modules."""

import logging
from pathlib import Path

from resdepth import expansion_plots, jobs, plots, transformer_plots

jobs.log_to(snakemake.log[0])
tables = {
    name: expansion_plots.read_table(path)
    for name, path in snakemake.input.items()
    if name != "lib"
}
module, function = snakemake.params.draw.split(".")
figures = {"expansion_plots": expansion_plots, "transformer_plots": transformer_plots}[module]
figure = getattr(figures, function)(**tables)
written = plots.save_figure(figure, Path(snakemake.output.pdf).with_suffix(""))
logging.info("%s -> %s", ", ".join(tables), ", ".join(map(str, written)))
