"""Rule aggregate_runs: every run's metrics.json -> results/runs.csv."""

import logging

from resdepth import aggregate, jobs

jobs.log_to(snakemake.log[0])
jobs.verify_run_files(snakemake.input.metrics)
runs = aggregate.load_runs(snakemake.input.metrics)
runs.to_csv(snakemake.output[0], index=False)
n_diverged = (runs["status"] == "diverged").sum()
logging.info("%d runs, %d diverged -> %s", len(runs), n_diverged, snakemake.output[0])
