"""Which GPU a local training job uses when the machine has several.

A scheduler that hands out GPUs (SLURM) sets ``CUDA_VISIBLE_DEVICES`` for each job, and
the job uses the first visible device. Snakemake's local executor sets nothing: with
``--resources gpu=4`` on a 4-GPU workstation, four concurrent jobs would all land on
``cuda:0``. Here each such job claims a free GPU instead, by holding an exclusive lock
file per GPU for as long as the process lives; the kernel drops the lock when the
process ends, however it ends, so a killed job never leaves a GPU claimed.

Torch-free (the number of devices is passed in), so it is tested without GPUs.
"""

import fcntl
import os
import tempfile
from pathlib import Path

#: Machine-wide (per user), so that two workflows on one machine share the claims.
LOCK_DIR = Path(tempfile.gettempdir()) / f"resdepth-gpu-locks-{os.getuid()}"

_held = []  # open lock files of this process's claims: closing one releases its GPU


def claim_gpu(device_count, lock_dir=LOCK_DIR):
    """The index of a GPU no other process has claimed, claimed for this process's life."""
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    for index in range(device_count):
        lock = open(lock_dir / f"gpu{index}.lock", "w")  # noqa: SIM115 - held until exit
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        _held.append(lock)
        return index
    raise RuntimeError(
        f"all {device_count} GPUs are claimed by other training jobs (locks in {lock_dir}): "
        f"run at most {device_count} at once (--resources gpu={device_count})"
    )


def local_gpu_index(device_count, environ=os.environ, lock_dir=LOCK_DIR):
    """Index of the CUDA device this job should use: 0 (the first visible device) when a
    scheduler chose the GPUs (``CUDA_VISIBLE_DEVICES`` set) or there is only one; else a
    GPU claimed with ``claim_gpu``."""
    if "CUDA_VISIBLE_DEVICES" in environ or device_count <= 1:
        return 0
    return claim_gpu(device_count, lock_dir)
