"""Training rules (one per pack): train a pack's runs together →
results/runs/<run_id>/{metrics.json,history.csv,model.pt} for each of them."""

import os
from pathlib import Path

import torch

from resdepth import checkpoint, data, gpus, grid, jobs, train

jobs.log_to(snakemake.log[0])
# The result-defining settings are params (they decide what is stale); the rest of the
# section (checkpoint cadence, CUDA graphs, GPU request, packing) only says how to run.
settings = {**snakemake.config["training"], **snakemake.params.training}
# The pack's runs are this job's outputs (run ids name the folders), its id names the log
# (train.smk). Neither is a param: packing is execution only, switching it reruns nothing.
runs = grid.training_runs(snakemake.config)
run_ids = [Path(path).parent.name for path in snakemake.output.metrics]
pack_id = Path(snakemake.log[0]).stem
checkpoint_path = f"results/checkpoints/{pack_id}.pt"  # outside the outputs: a failed job keeps it

torch.set_num_threads(snakemake.threads)
device = train.pick_device(settings["device"])
if device.type == "cuda":  # several local jobs on a multi-GPU machine: one GPU each
    device = torch.device("cuda", gpus.local_gpu_index(torch.cuda.device_count()))
    torch.cuda.set_device(device)
# Which GPU the scheduler gave this job, if any (SLURM sets CUDA_VISIBLE_DEVICES).
train.log.info("device %s, CUDA_VISIBLE_DEVICES=%s", device, os.environ.get("CUDA_VISIBLE_DEVICES"))
train.log.info("pack %s: %d runs, %s", pack_id, len(run_ids), ", ".join(run_ids))
dataset = data.load_prepared(snakemake.input.data, device, augment=snakemake.params.augment)

# SIGTERM/SIGUSR1 (preemption, time limit): checkpoint, then fail; a rerun resumes.
with checkpoint.signals_request_stop():
    results = train.train_pack(
        [runs[run_id] for run_id in run_ids],
        dataset,
        settings,
        snakemake.params.arch_options,
        device,
        checkpoint_path=checkpoint_path,
    )
for i, (run_id, (metrics, history, model)) in enumerate(zip(run_ids, results, strict=True)):
    metrics = {"run_id": run_id, **metrics, "pack_id": pack_id, "pack_members": run_ids}
    metrics["pack_backend"] = settings.get("pack_backend", "loop")
    jobs.save_weights(model, snakemake.output.model[i])
    jobs.write_csv(history, snakemake.output.history[i], train.HISTORY_COLUMNS)
    jobs.write_json(metrics, snakemake.output.metrics[i])
checkpoint.discard(checkpoint_path)  # the pack is complete
