"""Real snakemake runs in a temporary copy of the workflow."""

import json
import os
import time

import pandas as pd
import pytest
import torch
from conftest import default_config, pack_of, tiny_config, training_jobs

from resdepth import capacity, expansion_study, grid, packs, truncation

pytestmark = pytest.mark.workflow


def n_cells(grid):
    n = 1
    for values in grid.values():
        n *= len(values)
    return n


def pack_rules(config):
    """The training rules of a config's packs."""
    return {packs.rule_name(pack_id) for pack_id in packs.training_packs(config)[1]}


def test_default_config_plans_every_grid_cell(workflow):
    config = default_config()
    jobs = workflow.planned_jobs()
    assert training_jobs(jobs) == dict.fromkeys(pack_rules(config), 1)
    assert len(grid.training_runs(config)) > n_cells(config["grid"]) > len(pack_rules(config))
    assert jobs["digits"] == 1 and jobs["init_norms"] == 1 and jobs["all"] == 1


def test_tiny_run_writes_every_run_file(finished):
    config = tiny_config()
    run_dirs = sorted(finished.path("results/runs").iterdir())
    assert len(run_dirs) == len(grid.training_runs(config))
    for run in run_dirs:
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["run_id"] == run.name
        history = pd.read_csv(run / "history.csv")
        if metrics["status"] == "ok":  # epoch 0: GC at initialisation
            assert list(history["epoch"]) == [0, 1, 2] and 0 <= metrics["test_acc"] <= 1
            assert history["gc"].notna().all()
        else:
            assert metrics["status"] == "diverged" and metrics["test_acc"] is None
            assert len(history) == metrics["diverged_epoch"]
        state = torch.load(run / "model.pt", weights_only=True)
        assert "tower.lam" in state
        assert run.name in metrics["pack_members"]
        log = (finished.path("results/logs/train") / f"{metrics['pack_id']}.log").read_text()
        assert log.count(f"{metrics['scaling']} s0: epoch 1/2") == 1
        assert (finished.path("results/benchmarks/train") / f"{metrics['pack_id']}.tsv").exists()
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
    "claims_page",
    "paper",
)
FIGURE_RULES = ("plot_init_norms", "plot_accuracy_vs_depth", "plot_training_curves")


def test_tiny_run_writes_tables_and_figures(finished):
    config = tiny_config()
    runs = pd.read_csv(finished.path("results/runs.csv"))
    # runs.csv holds the grid's runs; the λ sweep's runs live beside them in results/runs/.
    assert sorted(runs["run_id"]) == sorted(grid.grid_runs(tiny_config()))
    assert set(grid.grid_runs(tiny_config())) < {
        p.name for p in finished.path("results/runs").iterdir()
    }
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
    new_runs = len(config["grid"]["scaling"]) * len(config["grid"]["seed"])
    new_packs = pack_rules(config) - pack_rules(tiny_config())
    assert training_jobs(jobs) == dict.fromkeys(new_packs, 1) and len(new_packs) == 1
    jobs = {rule: n for rule, n in jobs.items() if rule not in new_packs}
    assert jobs.pop("expansion_run") == new_runs
    # Every expansion figure but the truncation sweep's, which does not read runs.
    assert jobs.pop("plot_expansion") == 3
    # record_config: the new grid is a new result-defining config (results/config.json).
    rules = [*RUN_SUMMARY_RULES, "expansion_tables", "record_config", "all"]
    assert jobs == dict.fromkeys(rules, 1)


def edit(path):
    """Change a source file's content (snakemake ignores a touch with equal checksum)."""
    with open(path, "a") as f:
        f.write("\n# edited by a test\n")
    later = time.time() + 5
    os.utime(path, (later, later))


def test_plotting_change_redraws_only_figures_and_model_change_retrains(finished, tmp_path):
    workflow = finished.copy_to(tmp_path)  # edits here leave the shared run untouched
    assert workflow.planned_jobs(tiny_config()) == {}
    edit(workflow.path("scripts/resdepth/plots.py"))
    jobs = workflow.planned_jobs(tiny_config())
    assert jobs.pop("plot_expansion") == 4
    assert jobs.pop("plot_transformer") == 3  # the transformer studies' figures at init
    # the λ sweep's figures use plots.py too; `paper` collects the redrawn figures and
    # `claims_page` embeds them (no verdict is recomputed: `claims` does not rerun)
    assert jobs == dict.fromkeys([*FIGURE_RULES, "plot_capacity", "claims_page", "paper", "all"], 1)
    # Imported by training only through train.py: still part of every training job's code.
    edit(workflow.path("scripts/resdepth/complexity.py"))
    jobs = workflow.planned_jobs(tiny_config())
    assert training_jobs(jobs) == dict.fromkeys(pack_rules(tiny_config()), 1)
    assert "init_norms" not in jobs
    edit(workflow.path("scripts/resdepth/models.py"))
    jobs = workflow.planned_jobs(tiny_config())
    assert training_jobs(jobs) == dict.fromkeys(pack_rules(tiny_config()), 1)
    assert jobs["init_norms"] == 1 and "digits" not in jobs


def test_execution_settings_rerun_nothing_and_result_settings_retrain(finished):
    execution = tiny_config()
    execution["training"].update(checkpoint_every=3, gpu=True, cuda_graph=True)
    execution["training"]["packing"].update(enabled=False)  # one job per run instead
    assert finished.planned_jobs(execution) == {}
    result = tiny_config()
    result["training"]["momentum"] = 0.8
    assert training_jobs(finished.planned_jobs(result)) == dict.fromkeys(pack_rules(result), 1)


# The expansion rules (claims C1, C5) in the tiny end-to-end run.


def read(finished, name):
    return pd.read_csv(finished.path(f"results/expansion/{name}.csv"), dtype={"scaling": str})


def test_default_config_plans_one_expansion_job_per_run(workflow):
    jobs = workflow.planned_jobs()
    assert jobs["expansion_run"] == n_cells(default_config()["grid"])
    assert jobs["expansion_tables"] == 1 and jobs["expansion_truncation"] == 1


def test_tables_have_the_contracted_columns(finished):
    for name, columns in expansion_study.RUN_TABLE_COLUMNS.items():
        assert tuple(read(finished, name).columns) == columns
    assert tuple(read(finished, "truncation").columns) == truncation.TRUNCATION_COLUMNS
    slopes = read(finished, "truncation_slopes")
    assert tuple(slopes.columns) == truncation.SLOPE_COLUMNS


def ok_runs(finished):
    """The grid's runs that trained (the expansion study covers the grid, not the λ sweep)."""
    runs = {}
    for run_id in grid.grid_runs(tiny_config()):
        path = finished.path(f"results/runs/{run_id}/metrics.json")
        metrics = json.loads(path.read_text())
        runs[metrics["run_id"]] = metrics
    return {run_id: m for run_id, m in runs.items() if m["status"] == "ok"}


def test_orders_cover_every_run_and_reconstruct_the_tower(finished):
    """Tiny towers are no deeper than max_order: the path terms hold every path."""
    orders = read(finished, "orders")
    config = tiny_config()
    assert orders["run_id"].nunique() == n_cells(config["grid"])
    assert set(orders.loc[orders["stage"] == "trained", "run_id"]) == set(ok_runs(finished))
    for (run_id, _, decomposition), terms in orders.groupby(["run_id", "stage", "decomposition"]):
        depth = terms["depth"].iloc[0]
        assert list(terms["order"]) == list(range(depth + 1)), run_id
        if decomposition == "path":
            # Propagated, not differences: the terms must add up to a separate forward
            # pass, and no path is longer than the tower, so the tail above order n is 0.
            # (The Taylor remainder is x_n − Σ terms by definition: nothing to check here.)
            assert (terms["reconstruction_error"] < 1e-10).all(), run_id
            assert (terms["remainder_rel_norm"] < 1e-10).all(), run_id
            # P_1 + ... + P_n = x_n - x_0, whose relative norm is 1: the triangle inequality.
            assert terms.loc[terms["order"] >= 1, "rel_norm"].sum() >= 1 - 1e-9, run_id


def test_truncated_accuracy_with_every_path_is_the_models_accuracy(finished):
    accuracy = read(finished, "truncated_accuracy")
    runs = ok_runs(finished)
    assert set(accuracy["run_id"]) == set(runs)
    for run_id, rows in accuracy.groupby("run_id"):
        assert rows["order"].max() == runs[run_id]["depth"]
        full = rows["full_test_acc"].iloc[0]
        assert rows["test_acc"].iloc[-1] == pytest.approx(full)
        assert full == pytest.approx(runs[run_id]["test_acc"], abs=1e-6)


def test_lesion_deletes_every_module_of_every_trained_run(finished):
    lesion = read(finished, "lesion")
    runs = ok_runs(finished)
    for run_id, metrics in runs.items():
        rows = lesion[lesion["run_id"] == run_id]
        assert list(rows["module"]) == list(range(metrics["depth"]))


def test_expansion_figures_are_drawn(finished):
    for figure in ("truncation", "orders", "truncated_accuracy", "lesion"):
        for ext in ("pdf", "png"):
            assert finished.path(f"results/figures/expansion_{figure}.{ext}").stat().st_size > 1000
        assert finished.path(f"results/logs/plot_expansion_{figure}.log").read_text()


def test_truncation_sweep_fits_a_slope_per_order(finished):
    slopes = read(finished, "truncation_slopes")
    settings = tiny_config()["expansion"]["truncation"]
    path = slopes[slopes["decomposition"] == "path"]
    assert sorted(path["order"]) == sorted(settings["orders"])
    for _, row in path.iterrows():
        assert row["slope"] == pytest.approx(row["order"] + 1, abs=0.3)


def test_expansion_code_change_reruns_only_expansion_rules(finished, tmp_path):
    workflow = finished.copy_to(tmp_path)  # edits here leave the shared run untouched
    edit(workflow.path("scripts/resdepth/expansion.py"))
    jobs = workflow.planned_jobs(tiny_config())
    assert jobs.pop("expansion_run") == n_cells(tiny_config()["grid"])
    assert jobs.pop("plot_expansion") == 4
    # the transformer studies at init take their terms from expansion.py too, and their
    # truncation and radius figures are redrawn from the new tables
    assert jobs.pop("plot_transformer") == 2
    rules = ("expansion_tables", "expansion_truncation", "claims", "claims_page", "paper", "all")
    rules += ("expansion_truncation_transformer", "radius_transformer")
    assert jobs == dict.fromkeys(rules, 1)


def test_capacity_sweep_plans_only_its_own_runs(workflow):
    config = tiny_config()
    without_sweep = {key: value for key, value in config.items() if key != "capacity"}
    jobs_with, jobs_without = workflow.planned_jobs(config), workflow.planned_jobs(without_sweep)
    own_runs = set(grid.training_runs(config)) - set(grid.training_runs(without_sweep))
    # λ 0.1 and 0.316 unclipped (1/n and λ=1 are the grid's runs), and λ=1 clipped
    # (capacity.clipped from λ=1): a clipped run is never a grid run
    assert len(own_runs) == 3
    own_packs = {pack_of(config, run) for run in own_runs}
    # the unclipped runs join the grid's plain pack of their depth and seed; the clipped
    # one has a pack key of its own (packs.pack_key): one new training job
    new_packs = own_packs - set(packs.training_packs(without_sweep)[1])
    assert len(own_packs) == 2 and len(new_packs) == 1
    assert len(training_jobs(jobs_with)) == len(training_jobs(jobs_without)) + 1
    for rule in (
        "capacity_tables",
        "capacity_unimodality",
        "plot_capacity",
        packs.rule_name(new_packs.pop()),
    ):
        assert jobs_with.pop(rule) == 1
    assert jobs_with == jobs_without


def test_tiny_run_capacity_outputs(finished):
    sweep = pd.read_csv(finished.path("results/capacity/gc_vs_lambda.csv"))
    assert len(sweep) == len(grid.capacity_runs(tiny_config())) == 5
    assert list(sweep["lambda"]) == pytest.approx([0.1, 0.316, 1 / 3, 1.0, 1.0])
    assert sweep["grad_clip"].notna().sum() == 1  # λ=1 once more, clipped
    ok = sweep[sweep["status"] == "ok"]
    assert (ok["gc_final"] > 0).all() and (ok["gc_peak"] >= ok["gc_final"]).all()
    assert (sweep["gc_final_over_init"].dropna() > 0).all()
    history = pd.read_csv(finished.path("results/capacity/gc_history.csv"))
    assert set(history["epoch"]) == {0, 1, 2}
    result = json.loads(finished.path("results/capacity/unimodality.json").read_text())
    (one_sweep,) = result["sweeps"]
    assert one_sweep["seeds"] == [0]
    stable = capacity.stable_runs(sweep)
    assert one_sweep["lambdas"] == pytest.approx(sorted(stable["lambda"].unique()))
    assert one_sweep["gc_final"]["per_seed"][0]["n_lambdas"] == len(stable)
    (c4,) = [
        c
        for c in json.loads(finished.path("results/claims.json").read_text())["claims"]
        if c["id"] == "C4"
    ]
    assert c4["verdict"] == "not measured"  # one seed: no seed noise
    assert "1 seed(s) at every stable λ, 2 needed" in c4["summary"]
    assert c4["measured"]["clipped_runs_not_deciding"] == list(
        sweep.loc[sweep["grad_clip"].notna(), "run_id"]
    )
    for name in ("gc_vs_lambda", "accuracy_vs_lambda", "gc_over_training"):
        assert finished.path(f"results/figures/capacity_{name}.png").stat().st_size > 10_000
