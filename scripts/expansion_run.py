"""Rule expansion_run: one training run → results/expansion/runs/<run_id>/
{orders,truncated_accuracy,lesion}.csv (claim C5)."""

import json

import torch

from resdepth import data, expansion_study, jobs, train

jobs.log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
# The whole section; its result-defining part is the job's params.settings.
settings = snakemake.config["expansion"]
device = train.pick_device(settings["device"])
dataset = data.load_prepared(snakemake.input.data, device)
jobs.verify_run_files([snakemake.input.metrics, snakemake.input.model])
with open(snakemake.input.metrics) as f:
    metrics = json.load(f)
tables = expansion_study.run_tables(
    snakemake.wildcards.run_id,
    snakemake.params.cell,
    metrics["status"],
    jobs.load_weights(snakemake.input.model, metrics, device),
    dataset,
    settings,
    snakemake.params.arch_options,
)
for name, columns in expansion_study.RUN_TABLE_COLUMNS.items():
    jobs.write_csv(tables[name], getattr(snakemake.output, name), columns)
