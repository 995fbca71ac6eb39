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


#: Rules downstream of the training runs; they rerun whenever a run is added or changes.
RUN_SUMMARY_RULES = (
    "aggregate_runs",
    "accuracy_table",
    "plot_accuracy_vs_depth",
    "plot_training_curves",
    "claims",
    "paper",
)
FIGURE_RULES = ("plot_init_norms", "plot_accuracy_vs_depth", "plot_training_curves")


def test_tiny_run_writes_tables_and_figures(finished):
    config = tiny_config()
    runs = pd.read_csv(finished.path("results/runs.csv"))
    assert sorted(runs["run_id"]) == sorted(p.name for p in finished.path("results/runs").iterdir())
    accuracy = pd.read_csv(finished.path("results/tables/accuracy.csv"))
    assert len(accuracy) == len(config["grid"]["depth"]) * len(config["grid"]["scaling"])
    assert (accuracy["n_seeds"] == len(config["grid"]["seed"])).all()
    markdown = finished.path("results/tables/accuracy.md").read_text()
    assert "| scaling | n=2 | n=3 |" in markdown and "λ=1/n" in markdown
    assert "\\toprule" in finished.path("results/tables/accuracy.tex").read_text()
    for name in ("init_norms", "accuracy_vs_depth", "training_curves"):
        for ext in ("pdf", "png"):
            assert finished.path(f"results/figures/{name}.{ext}").stat().st_size > 1000
    for rule in ("aggregate_runs", "accuracy_table", *FIGURE_RULES):
        assert finished.path(f"results/logs/{rule}.log").read_text()
        assert finished.path(f"results/benchmarks/{rule}.tsv").exists()


def test_noop_rerun_plans_nothing(finished):
    assert finished.planned_jobs(tiny_config()) == {}


def test_new_depth_plans_only_its_jobs(finished):
    config = tiny_config()
    config["grid"]["depth"].append(5)
    jobs = finished.planned_jobs(config)
    assert jobs.pop("train") == len(config["grid"]["scaling"]) * len(config["grid"]["seed"])
    assert jobs == dict.fromkeys([*RUN_SUMMARY_RULES, "all"], 1)


def edit(path):
    """Change a source file's content (snakemake ignores a touch with equal checksum)."""
    with open(path, "a") as f:
        f.write("\n# edited by a test\n")
    later = time.time() + 5
    os.utime(path, (later, later))


def test_plotting_change_redraws_only_figures_and_model_change_retrains(workflow, tmp_path):
    workflow.run(config=tiny_config())
    edit(workflow.path("scripts/resdepth/plots.py"))
    assert workflow.planned_jobs(tiny_config()) == dict.fromkeys([*FIGURE_RULES, "paper", "all"], 1)
    edit(workflow.path("scripts/resdepth/models.py"))
    jobs = workflow.planned_jobs(tiny_config())
    assert jobs["train"] == n_cells(tiny_config()["grid"])
    assert jobs["init_norms"] == 1 and "digits" not in jobs
