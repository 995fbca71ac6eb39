"""Rule capacity_unimodality: capacity/gc_vs_lambda.csv -> capacity/unimodality.json."""

import json
import logging
from pathlib import Path

import pandas as pd

from resdepth import capacity

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
result = capacity.unimodality(pd.read_csv(snakemake.input.sweep))
Path(snakemake.output[0]).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
for metric in capacity.TESTED_METRICS:
    logging.info("%s: %s", metric, result[metric]["verdict"])
