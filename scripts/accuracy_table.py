"""Rule accuracy_table: results/runs.csv -> results/tables/accuracy.{csv,md,tex}."""

import logging

from resdepth import aggregate

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
runs = aggregate.read_runs_csv(snakemake.input.runs)
summary = aggregate.write_accuracy_tables(
    runs, snakemake.output.csv, snakemake.output.md, snakemake.output.tex
)
logging.info("%d table cells from %d runs", len(summary), len(runs))
