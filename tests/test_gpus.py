"""Concurrent local training jobs land on distinct GPUs (simulated device counts)."""

import subprocess
import sys

from conftest import REPO

from resdepth import gpus

CLAIM = (
    "import sys; sys.path.insert(0, sys.argv[1]); from resdepth import gpus; "
    "print(gpus.local_gpu_index(int(sys.argv[2]), {}, sys.argv[3]), flush=True); "
    "sys.stdin.read()"  # hold the claim until the test closes stdin
)


def start_job(device_count, lock_dir):
    """A process that claims a GPU like a training job and holds it; returns (process, index)."""
    job = subprocess.Popen(
        [sys.executable, "-c", CLAIM, str(REPO / "scripts"), str(device_count), str(lock_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = job.stdout.readline()
    return job, int(line) if line else None


def test_concurrent_jobs_get_distinct_gpus_and_a_finished_job_frees_its_gpu(tmp_path):
    jobs = [start_job(3, tmp_path) for _ in range(3)]
    try:
        assert sorted(index for _, index in jobs) == [0, 1, 2]
        extra, index = start_job(3, tmp_path)  # a 4th job on 3 GPUs
        assert index is None and extra.wait(timeout=30) != 0
        assert "all 3 GPUs are claimed" in extra.stderr.read()
        ended, freed = jobs.pop(1)
        ended.kill()  # even a killed job releases its GPU
        ended.wait(timeout=30)
        jobs.append(start_job(3, tmp_path))
        assert jobs[-1][1] == freed
    finally:
        for job, _ in jobs:
            job.kill()
            job.wait(timeout=30)


def test_scheduler_assigned_or_single_gpu_needs_no_claim(tmp_path):
    assert gpus.local_gpu_index(4, {"CUDA_VISIBLE_DEVICES": "2,3"}, tmp_path) == 0
    assert gpus.local_gpu_index(1, {}, tmp_path) == 0
    assert not list(tmp_path.iterdir())  # nothing claimed
