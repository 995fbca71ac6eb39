"""The pipeline on a real SLURM: a single-node cluster started by tests/slurm/start-cluster.sh,
driven through the repository's profile (workflow/profiles/slurm) as a user would.

Needs root on Debian/Ubuntu (the script installs the slurm, munge and MariaDB packages when
missing). Where the cluster cannot be started the tests are skipped with the reason, except
under CI (environment variable CI set), where they fail.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Workflow, tiny_config
from uninterrupted import assert_matches_uninterrupted_run, wait_for

from resdepth import grid, packs

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


FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL"}


def sacct_rows(selection, fields=("JobID", "Comment", "State", "AllocTRES")):
    """sacct's allocation rows of the selected jobs as dicts, once all are final
    (accounting lags a job's end by a moment)."""
    command = ["sacct", *selection, "-X", "-n", "-P", "--starttime", "now-1days"]
    for _ in range(100):
        out = subprocess.run(
            [*command, "-o", ",".join(fields)], capture_output=True, text=True, check=True
        ).stdout
        rows = [dict(zip(fields, line.split("|"), strict=True)) for line in out.splitlines()]
        if rows and all(row["State"] in FINAL_STATES for row in rows):
            return rows
        time.sleep(0.2)
    raise AssertionError(f"sacct has no final state for {selection}: {out!r}")


def snakemake_on_slurm(workflow, config, *args, seconds=480):
    """Start snakemake with the SLURM profile (under `timeout -k`: on SIGTERM snakemake
    waits for its jobs); its output goes to ``workflow.root/snakemake.out``."""
    command = ["timeout", "-k", "20", str(seconds), sys.executable, "-m", "snakemake"]
    command += ["--workflow-profile", "workflow/profiles/slurm"]
    command += ["--slurm-init-seconds-before-status-checks", "2"]
    command += [*args, "--configfile", str(workflow.write_config(config))]
    with open(workflow.path("snakemake.out"), "w") as out:
        return subprocess.Popen(command, cwd=workflow.root, stdout=out, stderr=subprocess.STDOUT)


def slurm_run_name(workflow):
    """The SLURM job name of all jobs of the invocation (the plugin's run id)."""
    text = workflow.path("snakemake.out").read_text()
    return re.search(r"SLURM run ID: (\S+)", text).group(1)


def rule_jobs(rows, rule, wildcards=""):
    comment = f"rule_{rule}" + (f"_wildcards_{wildcards}" if wildcards else "")
    return [row for row in rows if row["Comment"] == comment]


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
    (row,) = sacct_rows(["-j", job_id], ["State", "AllocTRES"])
    assert row["State"] == "COMPLETED"
    assert "gres/gpu=1" in row["AllocTRES"].split(",")


PREEMPTED = "inv"  # the scaling of the run that gets SIGTERM mid-training
DIVERGES = "one"  # λ=1 at depth 4 with lr 0.05: a result, not a failure


@pytest.fixture(scope="module")
def preempted_workflow(slurm_cluster, tmp_path_factory):
    """A tiny config run through SLURM, asking for GPUs; one training job is sent SIGTERM
    (`scancel --signal=TERM`) after its first checkpoint, as preemption would."""
    workflow = Workflow(tmp_path_factory.mktemp("slurm"))
    config = tiny_config()
    del config["capacity"]  # two grid runs, nothing else to train
    config["grid"].update(depth=[4], scaling=[DIVERGES, PREEMPTED], lr=[0.05], epochs=[100])
    config["training"].update(gpu=True, checkpoint_every=1)
    config["training"]["packing"]["enabled"] = False  # one job per run, named by its run id
    runs = grid.training_runs(config)
    (preempted_id,) = [r for r, cell in runs.items() if cell["scaling"] == PREEMPTED]

    snakemake = snakemake_on_slurm(workflow, config)
    try:
        checkpoint = workflow.path(f"results/checkpoints/{preempted_id}.pt")
        wait_for(checkpoint.exists, "a checkpoint", 300)
        queue = subprocess.run(
            ["squeue", "-h", "-o", "%i %k"], capture_output=True, text=True, check=True
        ).stdout
        (job_id,) = [
            j
            for j, c in map(str.split, queue.splitlines())
            if c == f"rule_{packs.rule_name(preempted_id)}"
        ]
        subprocess.run(["scancel", "--signal=TERM", job_id], check=True)
        returncode = snakemake.wait(timeout=600)
    finally:  # on a failed check, do not leave snakemake and its jobs running
        if snakemake.poll() is None:
            snakemake.terminate()  # snakemake cancels its SLURM jobs on SIGTERM
            snakemake.wait(timeout=60)
    assert returncode == 0, workflow.path("snakemake.out").read_text()[-5000:]
    return workflow, config, runs, preempted_id


def test_every_output_is_written(preempted_workflow):
    workflow, config, runs, _ = preempted_workflow
    for run_id in runs:
        for name in ("metrics.json", "history.csv", "model.pt"):
            assert workflow.path(f"results/runs/{run_id}/{name}").exists()
    assert workflow.path("results/init_norms.csv").exists()
    assert workflow.planned_jobs(config) == {}  # every output there and up to date
    # No training checkpoint is left; each finished run is kept for recovery.
    assert not list(workflow.path("results/checkpoints").glob("*.pt"))
    assert len(list(workflow.path("results/checkpoints").glob("*.finished"))) == len(runs)


def test_every_job_ran_under_slurm_and_died_jobs_were_retried(preempted_workflow):
    workflow, _, runs, preempted_id = preempted_workflow
    rows = sacct_rows(["--name", slurm_run_name(workflow)])
    assert [row["State"] for row in rule_jobs(rows, "init_norms")] == ["COMPLETED"]
    assert rule_jobs(rows, "digits") == []  # a local rule
    for run_id in runs:
        states = [row["State"] for row in rule_jobs(rows, packs.rule_name(run_id))]
        assert states == (["FAILED", "COMPLETED"] if run_id == preempted_id else ["COMPLETED"])
    diverged = [r for r in runs if r != preempted_id]
    status = json.loads(workflow.path(f"results/runs/{diverged[0]}/metrics.json").read_text())
    assert status["status"] == "diverged"  # completed once, not retried


def test_training_jobs_got_a_gpu(preempted_workflow):
    workflow, _, runs, _ = preempted_workflow
    rows = sacct_rows(["--name", slurm_run_name(workflow)])
    for run_id in runs:
        for row in rule_jobs(rows, packs.rule_name(run_id)):
            assert "gres/gpu=1" in row["AllocTRES"].split(",")
        log = workflow.path(f"results/logs/train/{run_id}.log").read_text()
        assert re.search(r"CUDA_VISIBLE_DEVICES=\d", log)
    (init_norms,) = rule_jobs(rows, "init_norms")
    assert "gres/gpu" not in init_norms["AllocTRES"]


def test_preempted_run_resumed_to_the_uninterrupted_result(preempted_workflow):
    workflow, config, runs, preempted_id = preempted_workflow
    log = workflow.path(f"results/logs/train/{preempted_id}.log").read_text()
    # Snakemake clears a job's log before a retry: the retry's log says what it resumed.
    assert re.search(r"resumed from \S+ \(saved on SIGTERM\) at epoch", log)

    assert_matches_uninterrupted_run(workflow, config, preempted_id)


@pytest.mark.usefixtures("slurm_cluster")
def test_failing_job_is_reported_as_failed_not_a_hang(tmp_path):
    workflow = Workflow(tmp_path)
    config = tiny_config()
    config["training"]["device"] = "cuda"  # no CUDA here: every training job fails
    config["training"]["packing"]["enabled"] = False  # one job per run, named by its run id
    run_id = next(iter(grid.training_runs(config)))
    snakemake = snakemake_on_slurm(
        workflow, config, f"results/runs/{run_id}/metrics.json", "--retries", "0", seconds=300
    )
    assert snakemake.wait(timeout=330) == 1  # an error, not the timeout's 124
    output = workflow.path("snakemake.out").read_text()
    assert "Error in rule train" in output
    rows = sacct_rows(["--name", slurm_run_name(workflow)])
    assert [row["State"] for row in rule_jobs(rows, packs.rule_name(run_id))] == ["FAILED"]
    log = workflow.path(f"results/logs/train/{run_id}.log").read_text()
    assert "no CUDA device is available" in log
