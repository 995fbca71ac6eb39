"""Rule `train`: one grid cell → results/runs/<run_id>/{metrics.json,history.csv,model.pt}."""

import os

import torch

from resdepth import checkpoint, data, jobs, provenance, train

jobs.log_to(snakemake.log[0])
# The whole section; its result-defining part is the job's params.training (it decides
# what is stale), the rest only says how to run (resdepth.settings).
settings = snakemake.config["training"]
torch.set_num_threads(snakemake.threads)
device = train.pick_device(settings["device"])
# Which GPU the scheduler gave this job, if any (SLURM sets CUDA_VISIBLE_DEVICES).
train.log.info("device %s, CUDA_VISIBLE_DEVICES=%s", device, os.environ.get("CUDA_VISIBLE_DEVICES"))

# What the outputs are computed from: a rerun whose outputs were deleted (Snakemake's
# --rerun-incomplete after it lost track of this job, or by hand) recovers them.
identity = {
    "cell": snakemake.params.cell,
    "training": snakemake.params.training,
    "arch_options": snakemake.params.arch_options,
    "augment": snakemake.params.augment,
    "data": data.sha256(snakemake.input.data),
    "code": checkpoint.code_digest(),
}
outputs = [snakemake.output.model, snakemake.output.history, snakemake.output.metrics]
if not checkpoint.recover_finished(outputs, identity, snakemake.params.checkpoint):
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
    jobs.save_weights(model, snakemake.output.model)
    metrics = {
        "run_id": snakemake.wildcards.run_id,
        **metrics,
        "model_sha256": data.sha256(snakemake.output.model),  # checked by its readers
        "provenance": provenance.provenance(
            settings, snakemake.params.arch_options, snakemake.params.augment
        ),
    }
    jobs.write_csv(history, snakemake.output.history, train.HISTORY_COLUMNS)
    jobs.write_json(metrics, snakemake.output.metrics)  # last: the run is complete
    checkpoint.keep_finished(outputs, identity, snakemake.params.checkpoint)
    checkpoint.discard(snakemake.params.checkpoint)
