import math

import pytest
import torch
from conftest import TRAIN_SETTINGS

from resdepth import data, grid, packs, train

SETTINGS = TRAIN_SETTINGS


@pytest.fixture(scope="module")
def digits():
    t = data.digits_tensors(0.25, split_seed=0)
    return data.Prepared(num_classes=10, **t)


def cell(**overrides):
    base = dict(dataset="digits", arch="mlp", depth=4, scaling="inv_sqrt", seed=0)
    base.update(width=64, lr=0.05, epochs=8, batch_size=128)
    return {**base, **overrides}


def test_short_digits_run_learns(digits):
    torch.set_num_threads(1)
    metrics, history, _ = train.train_run(cell(), digits, SETTINGS, device=torch.device("cpu"))
    assert metrics["status"] == "ok"
    assert metrics["test_acc"] > 0.90
    assert [row["epoch"] for row in history] == list(range(1, 9))
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_training_is_deterministic_given_the_seed(digits):
    c = cell(epochs=2, depth=3)
    first, _, model_a = train.train_run(c, digits, SETTINGS)
    second, _, model_b = train.train_run(c, digits, SETTINGS)
    third, _, _ = train.train_run({**c, "seed": 1}, digits, SETTINGS)
    assert first["test_loss"] == second["test_loss"]
    for a, b in zip(model_a.state_dict().values(), model_b.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert third["test_loss"] != first["test_loss"]


def test_deep_lambda_one_tower_is_recorded_as_diverged(digits):
    metrics, history, _ = train.train_run(
        cell(depth=200, scaling="one", epochs=3), digits, SETTINGS
    )
    assert metrics["status"] == "diverged"
    assert metrics["diverged_epoch"] == 1 and metrics["diverged_step"] >= 1
    assert metrics["test_acc"] is None and history == []


def test_lr_schedule_warms_up_then_decays_to_zero():
    lrs = [train.lr_at(s, 100, 10, 1.0) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))
    assert train.lr_at(100, 100, 10, 1.0) == pytest.approx(0.0, abs=1e-12)
    assert lrs[55] == pytest.approx(0.5, abs=0.02)


def test_run_id_is_readable_and_unique():
    a = grid.run_id(cell())
    assert a == "digits-mlp-n4-inv_sqrt-w64-lr0.05-e8-b128-s0"
    assert grid.run_id(cell(scaling=0.1)) == "digits-mlp-n4-lam0.1-w64-lr0.05-e8-b128-s0"
    runs = grid.training_runs(
        {
            "datasets": {"digits": {}},
            "grid": {k: [v] if k != "depth" else [2, 8] for k, v in cell().items()},
        }
    )
    assert len(runs) == 2 and all(grid.run_id(c) == rid for rid, c in runs.items())


def test_missing_dataset_section_is_named():
    config = {"datasets": {}, "grid": {k: [v] for k, v in cell().items()}}
    with pytest.raises(ValueError, match="datasets.digits"):
        grid.training_runs(config)


RESOURCE_CONFIG = {"training": {"device": "cpu", "threads": 1}, "arch_options": {}}


def test_resources_grow_with_depth():
    config = RESOURCE_CONFIG
    shallow = packs.pack_resources([cell(depth=10)], config)
    deep = packs.pack_resources([cell(depth=1000)], config)
    assert deep["mem_mb"] > shallow["mem_mb"] and deep["runtime"] > shallow["runtime"]
    assert math.isfinite(deep["runtime"])


def test_retry_after_running_out_of_memory_gets_more_memory_not_more_time():
    first = packs.pack_resources([cell()], RESOURCE_CONFIG, attempt=1)
    retry = packs.pack_resources([cell()], RESOURCE_CONFIG, attempt=2)
    assert retry["mem_mb"] == 2 * first["mem_mb"] and retry["runtime"] == first["runtime"]
