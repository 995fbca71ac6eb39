"""Rule accuracy_table: results/runs.csv -> results/tables/accuracy.{csv,md,tex}."""

import logging

from resdepth import aggregate, jobs

jobs.log_to(snakemake.log[0])
runs = aggregate.read_runs_csv(snakemake.input.runs)
summary = aggregate.write_accuracy_tables(
    runs, snakemake.output.csv, snakemake.output.md, snakemake.output.tex
)
logging.info("%d table cells from %d runs", len(summary), len(runs))
