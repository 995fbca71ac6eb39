"""Rule `train`: one grid cell → results/runs/<run_id>/{metrics.json,history.csv,model.pt}."""

import torch

from resdepth import data, jobs, train

jobs.log_to(snakemake.log[0])
settings = snakemake.params.training
torch.set_num_threads(snakemake.threads)
device = train.pick_device(settings["device"])
dataset = data.load_prepared(snakemake.input.data, device, augment=snakemake.params.augment)

metrics, history, model = train.train_run(
    snakemake.params.cell, dataset, settings, snakemake.params.arch_options, device
)
metrics = {"run_id": snakemake.wildcards.run_id, **metrics}
jobs.save_weights(model, snakemake.output.model)
jobs.write_csv(history, snakemake.output.history, train.HISTORY_COLUMNS)
jobs.write_json(metrics, snakemake.output.metrics)
