"""Training rules (one per pack): train a pack's runs together →
results/runs/<run_id>/{metrics.json,history.csv,model.pt} for each of them."""

import os
from pathlib import Path

import torch

from resdepth import checkpoint, data, gpus, grid, jobs, provenance, train

jobs.log_to(snakemake.log[0])
# The whole section; its result-defining part is the job's params.training (it decides
# what is stale), the rest only says how to run (resdepth.settings: checkpoint cadence,
# CUDA graphs, GPU request, packing, device, threads, batch grouping).
settings = snakemake.config["training"]
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


def outputs(i):
    """The files of the pack's ``i``-th run."""
    out = snakemake.output
    return [out.model[i], out.history[i], out.metrics[i]]


def kept_at(run_id):
    """Where a finished run keeps its outputs (checkpoint.finished_dir), per run: a run
    keeps them whichever pack trained it."""
    return f"results/checkpoints/{run_id}.pt"


# What every run of the pack is computed from, but for its cell.
shared = {
    "training": snakemake.params.training,
    "arch_options": snakemake.params.arch_options,
    "augment": snakemake.params.augment,
    "data": data.sha256(snakemake.input.data),
    "code": checkpoint.code_digest(),
}


def identity(run_id):
    """What a run's outputs are computed from: a rerun whose outputs were deleted
    (Snakemake's --rerun-incomplete after it lost track of this job, by hand, or a pack
    that gained a run) recovers them if this is unchanged, instead of training again."""
    return {"cell": runs[run_id], **shared}


to_train = [
    i
    for i, run_id in enumerate(run_ids)
    if not checkpoint.recover_finished(outputs(i), identity(run_id), kept_at(run_id))
]
if to_train:
    dataset = data.load_prepared(snakemake.input.data, device, augment=snakemake.params.augment)
    # SIGTERM/SIGUSR1 (preemption, time limit): checkpoint, then fail; a rerun resumes.
    with checkpoint.signals_request_stop():
        results = train.train_pack(
            [runs[run_ids[i]] for i in to_train],
            dataset,
            settings,
            snakemake.params.arch_options,
            device,
            checkpoint_path=checkpoint_path,
        )
    record = provenance.provenance(
        settings, snakemake.params.arch_options, snakemake.params.augment
    )
    for i, (metrics, history, model) in zip(to_train, results, strict=True):
        model_path, history_path, metrics_path = outputs(i)
        jobs.save_weights(model, model_path)
        metrics = {
            "run_id": run_ids[i],
            **metrics,
            "model_sha256": data.sha256(model_path),  # checked by its readers
            "pack_id": pack_id,
            "pack_members": [run_ids[j] for j in to_train],
            "pack_backend": settings.get("pack_backend", "loop"),
            "provenance": record,
        }
        jobs.write_csv(history, history_path, train.HISTORY_COLUMNS)
        jobs.write_json(metrics, metrics_path)  # last: the run is complete
        checkpoint.keep_finished(outputs(i), identity(run_ids[i]), kept_at(run_ids[i]))
    checkpoint.discard(checkpoint_path)  # the pack is complete
