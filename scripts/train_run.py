"""Training rules (one per pack): train a pack's runs →
results/runs/<run_id>/{metrics.json,history.csv,model.pt} for each of them
(resdepth.train_job)."""

from pathlib import Path

import torch

from resdepth import grid, jobs, train_job

jobs.log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
# The pack's runs are the job's outputs (run ids name the folders), its id a resource from
# the plan (train.smk). Neither is a param: packing is execution only, switching it reruns
# nothing.
out = snakemake.output
paths = zip(out.model, out.history, out.metrics, strict=True)
files = {Path(p[0]).parent.name: train_job.RunFiles(*map(Path, p)) for p in paths}
settings = snakemake.config["training"]  # its result-defining part: params.training
train_job.train_pack(
    snakemake.resources.pack,
    files,
    grid.training_runs(snakemake.config),
    snakemake.input.data,
    settings,
    dict(snakemake.params.items()),
    train_job.claim_device(settings["device"]),
)
