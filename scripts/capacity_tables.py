"""Rule capacity_tables: the λ sweep's runs -> capacity/gc_vs_lambda.csv, gc_history.csv."""

import logging

from resdepth import capacity, jobs

jobs.log_to(snakemake.log[0])
jobs.verify_run_files([*snakemake.input.metrics, *snakemake.input.histories])
table, history = capacity.sweep_tables(snakemake.input.metrics, snakemake.input.histories)
table.to_csv(snakemake.output.sweep, index=False)
history.to_csv(snakemake.output.history, index=False)
logging.info("%d runs, %d GC measurements", len(table), len(history))
