import copy
import math

import pytest
import torch
from conftest import inputs

from resdepth import expansion_study, models


def tiny_model(scaling, depth=3, seed=0):
    torch.manual_seed(seed)
    return models.build_model("mlp", (4,), 3, width=6, depth=depth, scaling=scaling).eval()


def test_calibrated_batchnorm_in_eval_mode_computes_what_training_mode_does():
    """Up to PyTorch's unbiased running variance (a factor n/(n-1), tiny for n = 4000)."""
    model, (x, _) = tiny_model("bn"), inputs(n=4000)
    with torch.no_grad():
        in_training_mode = model.train()(x)
        fresh = model.eval()(x)
        calibrated = expansion_study.calibrate_batchnorm_(model, x)(x)
    assert not model.training
    scale = in_training_mode.abs().max()
    assert (calibrated - in_training_mode).abs().max() < 1e-3 * scale
    assert (fresh - in_training_mode).abs().max() > 1e-1 * scale


def test_fresh_model_is_the_model_training_starts_from():
    cell = {"arch": "mlp", "width": 6, "depth": 3, "scaling": "inv", "seed": 7}
    first = expansion_study.fresh_model(cell, (4,), 3).state_dict()
    second = expansion_study.fresh_model(cell, (4,), 3).state_dict()
    other = expansion_study.fresh_model({**cell, "seed": 8}, (4,), 3).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not torch.equal(first["stem.1.weight"], other["stem.1.weight"])


def masks_at_x0_forward(model, x):
    """The tower output with every ReLU mask frozen at its value on x_0 (where each module
    sees x_0), written out for the MLP branch Linear-ReLU-Linear: a polynomial of degree n
    in λ, which the Taylor terms of orders 0..n sum to exactly."""
    x0 = model.stem(x)
    h = x0
    for branch, lam in zip(model.tower.branches, model.tower.scales(), strict=True):
        first, _, second = branch
        mask = first(x0) > 0
        h = h + lam * second(first(h) * mask)
    return x0, h


def test_order_rows_of_a_tower_no_deeper_than_the_order_count_every_path():
    model, (x, _) = tiny_model(0.5, depth=3), inputs()
    rows = expansion_study.order_rows(model, x, max_order=5)
    assert [(r["decomposition"], r["order"]) for r in rows] == [
        (d, k) for d in ("taylor", "path") for k in range(4)
    ]
    path = [r for r in rows if r["decomposition"] == "path"]
    assert all(r["remainder_rel_norm"] < 1e-12 for r in path)  # the tail, propagated
    assert all(r["reconstruction_error"] < 1e-12 for r in path)  # against a forward pass
    # Taylor to order n leaves exactly what the mask changes since x_0 add.
    with torch.no_grad():
        double = copy.deepcopy(model).double()
        x0, frozen = masks_at_x0_forward(double, x.double())
        output = double.tower(x0)
        expected = ((output - frozen).norm() / (output - x0).norm()).item()
    assert expected > 1e-3  # masks do change: the check is not 0 == 0
    for row in rows[:4]:
        assert row["remainder_rel_norm"] == pytest.approx(expected, rel=1e-9)
    # The terms of orders >= 1 sum to x_n - x_0, so their norms cannot sum to less.
    assert sum(r["rel_norm"] for r in path[1:]) >= 1 - 1e-12
    assert [r["binomial_prior"] for r in path] == pytest.approx(
        [math.comb(3, k) * 0.5**k for k in range(4)]
    )
    assert model.stem[1].weight.dtype == torch.float32  # the caller's model is untouched


def test_order_rows_of_an_identity_tower_are_nan_not_infinite():
    rows = expansion_study.order_rows(tiny_model("skipinit"), inputs()[0], max_order=2)
    assert all(math.isnan(r["rel_norm"]) for r in rows)


def test_truncated_accuracy_reaches_the_full_model_once_every_path_is_in():
    model, (x, y) = tiny_model(1.0, depth=3), inputs()
    rows = expansion_study.truncated_accuracy_rows(model, x, y, max_order=8, batch_size=16)
    assert [r["order"] for r in rows] == [0, 1, 2, 3]
    full = (model(x).argmax(1) == y).float().mean().item()
    assert rows[-1]["test_acc"] == pytest.approx(full)
    assert all(r["full_test_acc"] == pytest.approx(full) for r in rows)
    stem_only = (model.head(model.stem(x)).argmax(1) == y).float().mean().item()
    assert rows[0]["test_acc"] == pytest.approx(stem_only)


def test_lesion_of_a_switched_off_module_changes_nothing():
    model, (x, y) = tiny_model("skipinit", depth=4), inputs()
    with torch.no_grad():
        model.tower.alpha.copy_(torch.tensor([0.0, 0.8, 0.0, 0.8]))
    rows = expansion_study.lesion_rows(model, x, y, [0, 1, 2, 3], batch_size=16)
    assert [r["position"] for r in rows] == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert rows[0]["acc_drop"] == 0 and rows[2]["acc_drop"] == 0


def test_lesion_matches_a_tower_without_that_module():
    model, (x, y) = tiny_model(0.7, depth=3), inputs()
    rows = expansion_study.lesion_rows(model, x, y, [1], batch_size=16)
    with torch.no_grad():
        h = model.stem(x)
        for index, branch in enumerate(model.tower.branches):
            if index != 1:
                h = h + 0.7 * branch(h)
        expected = (model.head(h).argmax(1) == y).float().mean().item()
    assert rows[0]["test_acc"] == pytest.approx(expected)


@pytest.mark.parametrize(
    "depth, max_modules, expected",
    [(5, None, [0, 1, 2, 3, 4]), (5, 8, [0, 1, 2, 3, 4]), (100, 3, [0, 50, 99])],
)
def test_lesion_modules(depth, max_modules, expected):
    assert expansion_study.lesion_modules(depth, max_modules) == expected


def test_run_tables_of_ok_and_diverged_runs():
    from resdepth import data

    x, y = inputs(n=60)
    prepared = data.Prepared(x[:40].view(40, 2, 2), y[:40], x[40:].view(20, 2, 2), y[40:], 3)
    cell = {"dataset": "d", "arch": "mlp", "depth": 2, "scaling": "bn", "seed": 3, "width": 6}
    trained = expansion_study.fresh_model(cell, (2, 2), 3)
    settings = {"max_order": 1, "batch_size": 16, "eval_batch_size": 8, "lesion_max_modules": 1}
    ok = expansion_study.run_tables("r", cell, "ok", trained.state_dict(), prepared, settings)
    assert {(r["stage"], r["decomposition"]) for r in ok["orders"]} == {
        (s, d) for s in ("init", "trained") for d in ("taylor", "path")
    }
    assert all(r["run_id"] == "r" and r["scaling"] == "bn" for r in ok["orders"])
    assert [r["order"] for r in ok["truncated_accuracy"]] == [0, 1]
    assert [r["module"] for r in ok["lesion"]] == [0]
    for name, columns in expansion_study.RUN_TABLE_COLUMNS.items():
        assert all(tuple(row) == columns for row in ok[name])
    diverged = expansion_study.run_tables("r", cell, "diverged", None, prepared, settings)
    assert {r["stage"] for r in diverged["orders"]} == {"init"}
    assert diverged["truncated_accuracy"] == [] and diverged["lesion"] == []
