"""Rule capacity_tables: the λ sweep's runs -> capacity/gc_vs_lambda.csv, gc_history.csv."""

import json
import logging
from pathlib import Path

from resdepth import capacity, jobs

jobs.log_to(snakemake.log[0])
manifest = json.loads(Path(snakemake.input.manifest).read_text())
table, history = capacity.sweep_tables(
    snakemake.input.metrics,
    snakemake.input.histories,
    {manifest["dataset"]: manifest["num_classes"]},
)
table.to_csv(snakemake.output.sweep, index=False)
history.to_csv(snakemake.output.history, index=False)
flagged = table[table["flag_gc_peak_at_init"] | table["flag_train_loss_above_chance"]]
logging.info("%d runs (%d flagged), %d GC measurements", len(table), len(flagged), len(history))
