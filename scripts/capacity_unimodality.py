"""Rule capacity_unimodality: capacity/gc_vs_lambda.csv -> capacity/unimodality.json."""

import logging

import pandas as pd

from resdepth import capacity, jobs

jobs.log_to(snakemake.log[0])
result = capacity.unimodality(pd.read_csv(snakemake.input.sweep, dtype={"scaling": str}))
jobs.write_json(result, snakemake.output[0])
for sweep in result["sweeps"]:
    for metric in capacity.TESTED_METRICS:
        logging.info("%s: %s", metric, sweep[metric]["description"])
