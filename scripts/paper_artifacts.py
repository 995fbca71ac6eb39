"""Rule paper: copy figures and tables into results/paper/; the accuracy table as HTML."""

import logging
from pathlib import Path

from resdepth import aggregate, jobs, paper

jobs.log_to(snakemake.log[0])
sources = [*snakemake.input.figures, *snakemake.input.tables]
paper.copy_artifacts(sources, [*snakemake.output.figures, *snakemake.output.tables])
# The HTML table is built by the same code, from the same runs, as the Markdown and LaTeX.
summary = aggregate.summarise_accuracy(aggregate.read_runs_csv(snakemake.input.runs))
Path(snakemake.output.html).write_text(paper.html_table(aggregate.accuracy_table(summary)))
logging.info("%d files copied, %d table cells as HTML", len(sources), len(summary))
