"""Training rules (one per pack): results/runs/<run_id>/{metrics.json,history.csv,model.pt,
test_correct.npy} for each of the pack's runs (resdepth.train_job)."""

from pathlib import Path

import torch

from resdepth import grid, jobs, train_job

jobs.log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
out, settings = snakemake.output, snakemake.config["training"]
paths = zip(out.model, out.history, out.test_correct, out.metrics, strict=True)
train_job.train_pack(
    snakemake.resources.pack,  # the plan's pack id: like the runs, no param (train.smk)
    {Path(p[0]).parent.name: train_job.RunFiles(*map(Path, p)) for p in paths},  # by run id
    grid.training_runs(snakemake.config),
    snakemake.input.data,
    settings,  # the whole section; its result-defining part is params.training
    dict(snakemake.params.items()),
    train_job.claim_device(settings["device"]),
)
