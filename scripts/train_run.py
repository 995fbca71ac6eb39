"""Rule `train`: one grid cell → results/runs/<run_id>/{metrics.json,history.csv,model.pt}."""

import os

import torch

from resdepth import checkpoint, data, jobs, provenance, train

jobs.log_to(snakemake.log[0])
# The result-defining settings are params (they decide what is stale); the rest of the
# section (checkpoint cadence, CUDA graphs, GPU request) only says how to run.
settings = {**snakemake.config["training"], **snakemake.params.training}
torch.set_num_threads(snakemake.threads)
device = train.pick_device(settings["device"])
# Which GPU the scheduler gave this job, if any (SLURM sets CUDA_VISIBLE_DEVICES).
train.log.info("device %s, CUDA_VISIBLE_DEVICES=%s", device, os.environ.get("CUDA_VISIBLE_DEVICES"))
dataset = data.load_prepared(snakemake.input.data, device, augment=snakemake.params.augment)

# SIGTERM/SIGUSR1 (preemption, time limit): checkpoint, then fail; a rerun resumes.
with checkpoint.signals_request_stop():
    metrics, history, model = train.train_run(
        snakemake.params.cell,
        dataset,
        settings,
        snakemake.params.arch_options,
        device,
        checkpoint_path=snakemake.params.checkpoint,
    )
metrics = {
    "run_id": snakemake.wildcards.run_id,
    **metrics,
    "provenance": provenance.provenance(
        settings, snakemake.params.arch_options, snakemake.params.augment
    ),
}
jobs.save_weights(model, snakemake.output.model)
jobs.write_csv(history, snakemake.output.history, train.HISTORY_COLUMNS)
jobs.write_json(metrics, snakemake.output.metrics)
checkpoint.discard(snakemake.params.checkpoint)  # the run is complete
