"""A finished run is never trained twice: not after Snakemake lost track of its job
(Ctrl-C), not after its outputs were deleted; and valid edge configs complete."""

import json
import signal
import subprocess
import sys

import psutil
import pytest
from conftest import TINY_CONFIG, pack_of, tiny_config, training_jobs
from uninterrupted import wait_for

from resdepth import grid, packs

pytestmark = pytest.mark.workflow


def recovered_without_training(log):
    """The train job's log (Snakemake starts a job's log afresh) says it recovered."""
    text = log.read_text()
    return "recovered the finished run" in text and "epoch 1/" not in text


def test_deleted_run_outputs_are_rebuilt_by_the_default_target(finished, tmp_path):
    """``rm -r results/runs/<id>`` used to leave the run missing ("Nothing to be done")."""
    workflow = finished.copy_to(tmp_path)
    run_id = next(iter(grid.grid_runs(tiny_config())))
    run = workflow.path(f"results/runs/{run_id}")
    before = {path.name: path.read_bytes() for path in run.iterdir()}
    for path in run.iterdir():
        path.unlink()
    run.rmdir()
    assert sum(training_jobs(workflow.planned_jobs(tiny_config())).values()) == 1

    log = workflow.path(f"results/logs/train/{pack_of(tiny_config(), run_id)}.log")
    workflow.run(f"results/runs/{run_id}/metrics.json", config=tiny_config())
    assert recovered_without_training(log)
    assert {path.name: path.read_bytes() for path in run.iterdir()} == before


def test_run_finished_after_snakemake_was_interrupted_is_recovered(finished, tmp_path):
    """Ctrl-C to Snakemake alone: the job finishes, Snakemake marks its outputs incomplete,
    and ``--rerun-incomplete`` (on in both profiles) used to train the run again."""
    workflow = finished.copy_to(tmp_path)
    config = tiny_config()
    config["grid"].update(depth=[4], scaling=["inv_sqrt"], epochs=[40])
    (run_id,) = grid.grid_runs(config)
    target = f"results/runs/{run_id}/metrics.json"
    log = workflow.path(f"results/logs/train/{pack_of(config, run_id)}.log")
    command = [sys.executable, "-m", "snakemake", "--cores", "1", target]
    command += ["--configfile", str(workflow.write_config(config))]
    snakemake = subprocess.Popen(
        command, cwd=workflow.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for(lambda: log.exists() and "epoch 1/40" in log.read_text(), "training", 120)
        (trainer,) = [
            p
            for p in psutil.Process(snakemake.pid).children(recursive=True)
            if "train_run" in p.cmdline()[-1]
        ]
        snakemake.send_signal(signal.SIGINT)
        snakemake.wait(timeout=120)
        psutil.wait_procs([trainer], timeout=300)
    finally:
        if snakemake.poll() is None:
            snakemake.kill()
    assert snakemake.returncode != 0
    assert "epoch 40/40" in log.read_text()  # the job finished after Snakemake stopped
    finished_metrics = json.loads(workflow.path(target).read_text())

    workflow.run("--rerun-incomplete", target, config=config)
    assert recovered_without_training(log)
    assert json.loads(workflow.path(target).read_text()) == finished_metrics


def test_config_whose_runs_all_diverge_completes(finished, tmp_path):
    """A valid config whose every run diverges (lr 50) used to crash in plot_expansion
    (no trained run to draw) and plot_capacity, leaving no claims and no paper/."""
    workflow = finished.copy_to(tmp_path)  # only the runs and what reads them are new
    config = tiny_config()
    config["grid"]["lr"] = [50.0]
    config["capacity"].update(lr=50.0)
    config["capacity"].pop("clipped", None)  # clipping would keep it finite
    workflow.run(config=config)
    for run_id in grid.training_runs(config):
        metrics = json.loads(workflow.path(f"results/runs/{run_id}/metrics.json").read_text())
        assert metrics["status"] == "diverged"
    claims = json.loads(workflow.path("results/claims.json").read_text())
    verdicts = {claim["id"]: claim["verdict"] for claim in claims["claims"]}
    assert verdicts["C4"] == verdicts["C5"] == "not measured"
    for figure in ("expansion_lesion", "expansion_truncated_accuracy", "capacity_gc_vs_lambda"):
        assert workflow.path(f"results/paper/{figure}.png").exists()


def test_execution_only_settings_rerun_nothing(finished):
    """Device, threads and batch grouping used to retrain every run and redo every
    expansion job; settings that define a result still rerun their jobs."""
    execution = tiny_config()
    execution["training"].update(device="cpu", threads=2, eval_batch_size=100)
    execution["training"]["gc"]["chunk_size"] = 16
    execution["expansion"].update(device="cpu", threads=2, eval_batch_size=100)
    assert finished.planned_jobs(execution) == {}

    result = tiny_config()
    result["training"]["gc"]["inputs"] = 32
    result["expansion"]["max_order"] = 4
    jobs = finished.planned_jobs(result)
    assert len(training_jobs(jobs)) == len(packs.training_packs(result)[1])  # every pack
    assert jobs["expansion_run"] == len(grid.grid_runs(result))


def test_changed_run_files_stop_every_reader_by_name_until_restored(finished, tmp_path):
    """Issue 23: one digit of a run's test_acc edited, seven bytes cut from a λ-sweep
    run's history.csv: both used to exit 0 with the new numbers in runs.csv, the tables,
    the figures and the claims. Now the rules reading them fail naming each file and its
    fix; following the fixes ends where the unchanged run ended."""
    workflow = finished.copy_to(tmp_path)
    config = tiny_config()
    grid_run = next(iter(grid.grid_runs(config)))
    sweep_run = next(r for r in grid.capacity_runs(config) if r not in grid.grid_runs(config))
    results = {
        name: workflow.path(f"results/{name}").read_bytes()
        for name in ("runs.csv", "capacity/gc_vs_lambda.csv", "claims.json")
    }
    metrics = workflow.path(f"results/runs/{grid_run}/metrics.json")
    edited = json.loads(metrics.read_text())
    edited["test_acc"] = round(edited["test_acc"] + 0.01, 6)
    metrics.unlink()  # an editor's save: a new file; the kept copy stays intact
    metrics.write_text(json.dumps(edited, indent=2) + "\n")
    history = workflow.path(f"results/runs/{sweep_run}/history.csv")
    with open(history, "r+b") as file:  # cut in place (the copy above has no hard links)
        file.truncate(history.stat().st_size - 7)

    result = workflow.run("--configfile", TINY_CONFIG, "--keep-going", check=False)
    console = result.stdout + result.stderr
    assert result.returncode != 0
    for changed in (metrics, history):
        changed = changed.relative_to(workflow.root)
        assert f"{changed} is not the file its training job wrote" in console
        assert f"delete {changed} and rerun the workflow" in console  # the kept copy is intact
    for name, before in results.items():  # a failed job's outputs are removed, not rewritten
        path = workflow.path(f"results/{name}")
        assert not path.exists() or path.read_bytes() == before, name

    metrics.unlink()
    history.unlink()
    workflow.run("--configfile", TINY_CONFIG)
    for run_id in (grid_run, sweep_run):
        log = workflow.path(f"results/logs/train/{pack_of(config, run_id)}.log")
        assert recovered_without_training(log)
    for name, before in results.items():
        assert workflow.path(f"results/{name}").read_bytes() == before, name
