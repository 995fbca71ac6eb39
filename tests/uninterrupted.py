"""Check a resumed training run against the same run computed without interruption."""

import json
import time

import pandas as pd
import torch
from conftest import pack_of
from training import train_run

from resdepth import data, packs, train


def without_wall_time(metrics, history):
    """Wall times differ between any two runs; everything else must not."""
    return (
        {k: v for k, v in metrics.items() if k != "wall_time_s"},
        [{k: v for k, v in row.items() if k != "wall_time_s"} for row in history],
    )


def assert_matches_uninterrupted_run(workflow, config, run_id):
    """The run's outputs in ``workflow`` equal, bit for bit (wall times aside), what the
    library computes for the run alone in one go, with the job's thread count (a packed
    run trains exactly as it would alone)."""
    run = workflow.path(f"results/runs/{run_id}")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics.pop("model_sha256") == data.sha256(run / "model.pt")
    del metrics["provenance"]  # the job's record of how it ran (tests/test_provenance.py)
    history = pd.read_csv(run / "history.csv")
    weights = torch.load(run / "model.pt", weights_only=True)

    runs, plan = packs.training_packs(config)
    cell, pack_id = runs[run_id], pack_of(config, run_id)
    dataset = data.load_prepared(workflow.path(f"results/data/{cell['dataset']}.pt"))
    threads = torch.get_num_threads()
    torch.set_num_threads(config["training"]["threads"])
    try:
        expected_metrics, expected_history, model = train_run(cell, dataset, config["training"])
    finally:
        torch.set_num_threads(threads)
    expected_metrics = {"run_id": run_id, **expected_metrics}
    expected_metrics.update(pack_id=pack_id, pack_members=plan[pack_id])
    expected_metrics["pack_backend"] = config["training"].get("pack_backend", "loop")
    assert {**metrics, "wall_time_s": None} == {**expected_metrics, "wall_time_s": None}
    # As the job writes it: a column a row has no value in (GC not measured) is empty.
    expected_history = pd.DataFrame(expected_history, columns=train.HISTORY_COLUMNS)
    pd.testing.assert_frame_equal(
        history.drop(columns="wall_time_s"), expected_history.drop(columns="wall_time_s")
    )
    assert weights.keys() == model.state_dict().keys()
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())


def wait_for(condition, what, seconds):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        time.sleep(0.05)
