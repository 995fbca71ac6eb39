"""Training rules (one per pack): train a pack's runs →
results/runs/<run_id>/{metrics.json,history.csv,model.pt} for each of them
(resdepth.train_job)."""

from pathlib import Path

import torch

from resdepth import jobs, packs, train_job

jobs.log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
# The pack's runs are the job's outputs (run ids name the folders), its pack is the plan's.
# Neither is a param: packing is execution only, switching it reruns nothing.
out = snakemake.output
paths = zip(out.model, out.history, out.metrics, strict=True)
files = {Path(p[0]).parent.name: train_job.RunFiles(*map(Path, p)) for p in paths}
runs, plan = packs.training_packs(snakemake.config)
settings = snakemake.config["training"]  # its result-defining part: params.training
train_job.train_pack(
    packs.pack_of(plan, next(iter(files))),
    files,
    runs,
    snakemake.input.data,
    settings,
    dict(snakemake.params.items()),
    train_job.claim_device(settings["device"]),
)
