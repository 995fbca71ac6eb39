"""The pipeline on a real SLURM: a single-node cluster started by tests/slurm/start-cluster.sh.

Needs root on Debian/Ubuntu (the script installs the slurm, munge and MariaDB packages when
missing). Where the cluster cannot be started the tests are skipped with the reason, except
under CI (environment variable CI set), where they fail.
"""

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CLUSTER_SCRIPTS = REPO / "tests" / "slurm"
STATE_DIR = Path(os.environ.get("RESDEPTH_SLURM_DIR", "/tmp/resdepth-slurm"))

pytestmark = pytest.mark.slurm


def cluster_unavailable(reason):
    if os.environ.get("CI"):
        pytest.fail(f"cannot start the test SLURM cluster (CI is set): {reason}")
    pytest.skip(f"cannot start the test SLURM cluster: {reason}")


def stop_daemons(names):
    """Stop exactly the daemons this test module started (none: leave the cluster be)."""
    if names:
        subprocess.run(
            [CLUSTER_SCRIPTS / "stop-cluster.sh", STATE_DIR, *names], check=True, timeout=300
        )


@pytest.fixture(scope="module")
def slurm_cluster():
    """A running cluster (its state directory) while the module's tests run."""
    if os.geteuid() != 0:
        cluster_unavailable("the daemons run as root; run the tests as root")
    if not (shutil.which("slurmctld") or shutil.which("apt-get")):
        cluster_unavailable("SLURM is not installed and there is no apt-get to install it")
    try:
        start = subprocess.run(
            [CLUSTER_SCRIPTS / "start-cluster.sh", STATE_DIR],
            capture_output=True,
            text=True,
            timeout=600,
        )
    except subprocess.TimeoutExpired:
        cluster_unavailable("start-cluster.sh did not finish within 10 minutes")
    started = [line.split()[1] for line in start.stdout.splitlines() if line.startswith("started ")]
    if start.returncode != 0:
        stop_daemons(started)
        cluster_unavailable(f"start-cluster.sh exited {start.returncode}: {start.stderr[-3000:]}")
    yield STATE_DIR
    stop_daemons(started)


def sacct_rows(job_id, fields):
    """sacct's allocation rows of one job as dicts (accounting lags the job by a moment)."""
    for _ in range(50):
        out = subprocess.run(
            ["sacct", "-j", str(job_id), "-X", "-n", "-P", "-o", ",".join(fields)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        rows = [dict(zip(fields, line.split("|"), strict=True)) for line in out.splitlines()]
        if rows and all(row["State"] not in ("PENDING", "RUNNING") for row in rows):
            return rows
        time.sleep(0.2)
    raise AssertionError(f"sacct has no final state for job {job_id}: {out!r}")


@pytest.mark.usefixtures("slurm_cluster")
def test_gpu_job_gets_a_gpu_slot_and_is_accounted(tmp_path):
    out = tmp_path / "job.out"
    submit = subprocess.run(
        ["sbatch", "--parsable", "--wait", "--gpus=1", "--mem=100", "--time=2"]
        + [f"--output={out}", "--wrap", "echo CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert submit.returncode == 0, submit.stderr
    job_id = submit.stdout.strip().split(";")[0]
    assert out.read_text().strip() in {f"CUDA_VISIBLE_DEVICES={i}" for i in range(8)}
    (row,) = sacct_rows(job_id, ["State", "AllocTRES"])
    assert row["State"] == "COMPLETED"
    assert "gres/gpu=1" in row["AllocTRES"].split(",")
