"""A training job: bring every run of one pack to its finished files.

``train_pack`` recovers the runs that a job has finished before (``recover``), trains the
rest one trainee after another (``trainees``, ``train.train``) and, the moment a trainee
ends, writes each of its runs' ``model.pt``, ``history.csv`` and, last, ``metrics.json``
(``metrics``), keeps them for recovery (``keep``) and deletes its checkpoint. A job
interrupted after its third run loses nothing of the first three.

Why keep finished runs: a job can finish after Snakemake stopped watching it (Ctrl-C to
Snakemake alone, a lost cluster connection); Snakemake then marks its outputs incomplete
and deletes them before rerunning the job, and an output deleted by hand is rebuilt the
same way. Both reruns recover the finished run instead of training it again: the job keeps
each run's outputs in ``results/checkpoints/<run_id>.finished/`` (hard links, no extra
space while the outputs exist), with a record of what they were computed from and their
sha256, written last: a run counts as finished only once that record is there.
"""

import json
import logging
import os
import shutil
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from resdepth import checkpoint, data, gpus, grid, jobs, packed, provenance, train
from resdepth.scalings import branch_scale

log = logging.getLogger(__name__)

#: Checkpoints and kept finished runs: outside the rules' outputs, which Snakemake deletes
#: when a job fails.
CHECKPOINTS = Path("results/checkpoints")


class RunFiles(NamedTuple):
    """A run's output files, in the order the job writes them (metrics.json last)."""

    model: Path
    history: Path
    test_correct: Path
    metrics: Path


def claim_device(name):
    """The device that ``training.device`` names; of several local GPUs, one of its own."""
    device = train.pick_device(name)
    if device.type == "cuda":  # several local jobs on a multi-GPU machine: one GPU each
        device = torch.device("cuda", gpus.local_gpu_index(torch.cuda.device_count()))
        torch.cuda.set_device(device)
    # Which GPU the scheduler gave this job, if any (SLURM sets CUDA_VISIBLE_DEVICES).
    log.info("device %s, CUDA_VISIBLE_DEVICES=%s", device, os.environ.get("CUDA_VISIBLE_DEVICES"))
    return device


def train_pack(pack_id, files, cells, data_path, settings, params, device, checkpoints=CHECKPOINTS):
    """Bring every run of pack ``pack_id`` to its finished ``files`` (``{run_id:
    RunFiles}``, the pack's runs in order); ``cells`` has each run's cell (``{run_id:
    cell}``, at least the pack's). ``settings`` is the config's whole ``training``
    section, ``params`` the job's result-defining ones (``training``, ``arch_options``,
    ``augment``: what a kept run must have been computed from to be recovered).
    SIGTERM/SIGUSR1 checkpoint the trainee in training and raise
    ``checkpoint.Interrupted``; a rerun resumes it.
    """
    checkpoints = Path(checkpoints)
    log.info("pack %s: %d runs, %s", pack_id, len(files), ", ".join(files))
    shared = {**params, "data": data.sha256(data_path), "code": provenance.code_digest()}
    identities = {run_id: {"cell": cells[run_id], **shared} for run_id in files}
    to_train = [
        run_id
        for run_id in files
        if not recover(files[run_id], identities[run_id], checkpoints / f"{run_id}.finished")
    ]
    if not to_train:
        return
    dataset = data.load_prepared(data_path, device, augment=params["augment"])
    record = provenance.provenance(settings, params["arch_options"], params["augment"])
    with checkpoint.signals_request_stop():
        for name, trainee in trainees(
            pack_id, {r: cells[r] for r in to_train}, dataset, settings, params, device
        ):
            checkpoint_path = checkpoints / f"{name}.pt"
            train.train(trainee, dataset, settings, checkpoint_path)
            for run in trainee.runs:
                run_id = grid.run_id(run.cell)
                written = files[run_id]
                jobs.save_weights(run.model, written.model)
                jobs.write_csv(run.history, written.history, train.HISTORY_COLUMNS)
                jobs.save_array(test_correct(run, dataset, settings), written.test_correct)
                job = {"pack_id": pack_id, "pack_members": to_train, "provenance": record}
                run_metrics = metrics(run_id, run, written.model, settings, job)
                jobs.write_json(run_metrics, written.metrics)  # last: the run is complete
                keep(written, identities[run_id], checkpoints / f"{run_id}.finished")
            checkpoint.discard(checkpoint_path)


def trainees(pack_id, cells, dataset, settings, params, device):
    """(checkpoint name, trainee) for the runs ``cells`` (``{run_id: cell}``), each built
    only when the job gets to it: every run alone, named by its run id; or, with
    ``training.pack_backend: packed``, all of them as one model (packed.PackedRuns),
    named by the pack id."""
    arch_options = params["arch_options"]
    if settings.get("pack_backend", "loop") == "packed":
        runs = list(cells.values())
        yield pack_id, packed.PackedRuns(runs, dataset, settings, arch_options, device)
        return
    for run_id, cell in cells.items():
        yield run_id, train.Run(cell, dataset, settings, arch_options, device)


def test_correct(run, dataset, settings):
    """Whether the trained ``run`` predicts each test example right (train.test_outcomes);
    empty for a diverged run, which has no final model to score."""
    if run.diverged_at:
        return np.zeros(0, dtype=bool)
    return train.test_outcomes(run.model, dataset, settings["eval_batch_size"], settings)


def outcome(run):
    """What training measured of ``run`` (a trained train.Run), as a run alone reports it:
    its cell, λ, status, final metrics, wall time, size and device."""
    final = run.history[-1] if run.history and run.diverged_at is None else {}
    device = run.device
    return {
        **run.cell,
        "lambda": branch_scale(run.cell["scaling"], run.cell["depth"]),
        "status": "diverged" if run.diverged_at else "ok",
        "diverged_epoch": run.diverged_at[0] if run.diverged_at else None,
        "diverged_step": run.diverged_at[1] if run.diverged_at else None,
        **{k: final.get(k) for k in ("train_loss", "train_acc", "test_loss", "test_acc")},
        "wall_time_s": run.wall_time_s,
        "n_params": sum(p.numel() for p in run.model.parameters()),
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
    }


def metrics(run_id, run, model_path, settings, job):
    """The ``metrics.json`` of ``run`` (docs/file-contracts.md): its id, ``outcome``, the
    sha256 of its ``model_path``, then the job's record (``job``: ``pack_id``,
    ``pack_members`` = the runs this job trained, ``provenance``)."""
    return {
        "run_id": run_id,
        **outcome(run),
        "model_sha256": data.sha256(model_path),  # checked by its readers
        "pack_id": job["pack_id"],
        "pack_members": job["pack_members"],
        "pack_backend": settings.get("pack_backend", "loop"),
        "provenance": job["provenance"],
    }


def _link_or_copy(source, target):
    """``target`` becomes ``source``'s bytes: a hard link, a copy across file systems."""
    tmp = Path(target).with_name(Path(target).name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def keep(outputs, identity, kept):
    """Keep a finished run's ``outputs`` (paths with distinct names) in the folder
    ``kept``, with ``identity`` (what they were computed from) and their sha256."""
    kept = Path(kept)
    shutil.rmtree(kept, ignore_errors=True)
    kept.mkdir(parents=True)
    for output in map(Path, outputs):
        _link_or_copy(output, kept / output.name)
    record = {"identity": identity, "sha256": {Path(o).name: data.sha256(o) for o in outputs}}
    (kept / "record.json").write_text(json.dumps(record, indent=2) + "\n")  # last: complete


def recover(outputs, identity, kept):
    """Put back the ``outputs`` that ``keep`` kept in ``kept`` for the same ``identity``;
    return whether it did. Kept files whose sha256 changed are an error."""
    kept = Path(kept)
    record_path = kept / "record.json"
    if not record_path.exists():
        return False
    record = json.loads(record_path.read_text())
    if record["identity"] != json.loads(json.dumps(identity)):
        log.info("not recovering %s: computed from other inputs, settings or code", kept)
        return False
    for output in map(Path, outputs):
        if data.sha256(kept / output.name) != record["sha256"][output.name]:
            raise checkpoint.Corrupted(
                f"{kept / output.name} is corrupted (its sha256 differs from {record_path}); "
                f"delete {kept} to train this run from scratch"
            )
    for output in map(Path, outputs):
        output.parent.mkdir(parents=True, exist_ok=True)
        _link_or_copy(kept / output.name, output)
    log.info("recovered the finished run's outputs from %s", kept)
    return True
