"""Real snakemake runs in a temporary copy of the workflow."""

import json
import os
import time

import pandas as pd
import pytest
import torch
from conftest import default_config, tiny_config

pytestmark = pytest.mark.workflow


def n_cells(grid):
    n = 1
    for values in grid.values():
        n *= len(values)
    return n


def test_default_config_plans_every_grid_cell(workflow):
    config = default_config()
    jobs = workflow.planned_jobs()
    assert jobs["train"] == n_cells(config["grid"])
    assert jobs["digits"] == 1 and jobs["init_norms"] == 1 and jobs["all"] == 1


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The tiny config, run once end to end; shared by the checks below."""
    from conftest import Workflow

    wf = Workflow(tmp_path_factory.mktemp("tiny"))
    wf.run(config=tiny_config())
    return wf


def test_tiny_run_writes_every_run_file(finished):
    config = tiny_config()
    run_dirs = sorted(finished.path("results/runs").iterdir())
    assert len(run_dirs) == n_cells(config["grid"])
    for run in run_dirs:
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["run_id"] == run.name
        history = pd.read_csv(run / "history.csv")
        if metrics["status"] == "ok":
            assert list(history["epoch"]) == [1, 2] and 0 <= metrics["test_acc"] <= 1
        else:
            assert metrics["status"] == "diverged" and metrics["test_acc"] is None
            assert len(history) == metrics["diverged_epoch"] - 1
        state = torch.load(run / "model.pt", weights_only=True)
        assert "tower.lam" in state
        log = (finished.path("results/logs/train") / f"{run.name}.log").read_text()
        assert log.count("epoch 1/2") == 1
        assert (finished.path("results/benchmarks/train") / f"{run.name}.tsv").exists()
    manifest = json.loads(finished.path("results/data/digits.json").read_text())
    assert manifest["n_train"] + manifest["n_test"] == 1797


def test_tiny_run_init_norms(finished):
    norms = pd.read_csv(finished.path("results/init_norms.csv"))
    assert len(norms) == 2 * 2 * 1
    deep = norms.set_index(["scaling", "depth"])["rel_norm"]
    assert deep[("one", 10)] > 10 * deep[("inv", 10)]


def test_noop_rerun_plans_nothing(finished):
    assert finished.planned_jobs(tiny_config()) == {}


def test_new_depth_plans_only_its_jobs(finished):
    config = tiny_config()
    config["grid"]["depth"].append(5)
    jobs = finished.planned_jobs(config)
    assert jobs.pop("train") == len(config["grid"]["scaling"]) * len(config["grid"]["seed"])
    assert "digits" not in jobs and "init_norms" not in jobs


def edit(path):
    """Change a source file's content (snakemake ignores a touch with equal checksum)."""
    with open(path, "a") as f:
        f.write("\n# edited by a test\n")
    later = time.time() + 5
    os.utime(path, (later, later))


def test_model_change_retrains(workflow, tmp_path):
    workflow.run(config=tiny_config())
    edit(workflow.path("scripts/resdepth/models.py"))
    jobs = workflow.planned_jobs(tiny_config())
    assert jobs["train"] == n_cells(tiny_config()["grid"])
    assert jobs["init_norms"] == 1 and "digits" not in jobs
