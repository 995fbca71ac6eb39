import copy
import math

import numpy as np
import pandas as pd
import pytest
import torch

from resdepth import expansion, expansion_study, models


def tiny_model(scaling, depth=3, seed=0):
    torch.manual_seed(seed)
    return models.build_model("mlp", (4,), 3, width=6, depth=depth, scaling=scaling).eval()


def inputs(n=40, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


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


def test_truncation_slopes_recover_a_known_power_law():
    rows = [
        {"dataset": "d", "arch": "mlp", "activation": a, "width": 4, "depth": 2, "seed": 0}
        | {"lambda": lam, "decomposition": "taylor", "order": 2, "rel_error": c * lam**p}
        for a, c, p in (("relu", 5, 3), ("tanh", 2, 3.5))
        for lam in (1e-3, 1e-2, 1e-1, 1.0)
    ]
    slopes = expansion_study.truncation_slopes(rows, fit_max_lambda=0.2)
    by_activation = {s["activation"]: s for s in slopes}
    assert by_activation["relu"]["slope"] == pytest.approx(3)
    assert by_activation["tanh"]["slope"] == pytest.approx(3.5)
    assert by_activation["relu"]["n_points"] == 3
    assert by_activation["relu"]["fit_lambda_max"] == pytest.approx(0.1)


def test_per_input_slopes_stop_below_the_first_mask_change_and_above_round_off():
    lambdas = np.geomspace(1e-5, 1e-1, 9)  # 2 per decade
    # input 0: λ^3 until its first mask change at λ[6] = 1e-2, then a jump;
    # input 1: no mask change on the grid; input 2: a change at λ[1], too early to fit
    errors = torch.tensor(lambdas[:, None] ** 3 * np.ones((9, 3)))
    errors[6:, 0] = 1.0
    floors = torch.full((9, 3), 1e-14)  # λ[0]^3 = 1e-15 is below: round-off
    first = torch.tensor([lambdas[6], math.inf, lambdas[1]], dtype=torch.float64)
    rows = expansion_study._per_input_slopes(
        {"seed": 0}, lambdas, [2], errors[:, None, :], floors, first, fit_max_lambda=0.05
    )
    assert [r["slope"] for r in rows[:2]] == pytest.approx([3, 3])
    assert rows[0]["fit_lambda_min"] == pytest.approx(lambdas[1])  # λ[0]: round-off
    assert rows[0]["fit_lambda_max"] == pytest.approx(lambdas[5])  # below the change
    assert rows[1]["fit_lambda_max"] == pytest.approx(lambdas[7])  # up to fit_max_lambda
    assert math.isnan(rows[2]["slope"]) and rows[2]["n_points"] == 0
    assert rows[0]["first_mask_change_lambda"] == lambdas[6]


def test_truncation_tables_of_relu_and_smooth_towers():
    settings = {
        "dataset": "d",
        "arch": "mlp",
        "width": 8,
        "depth": 4,
        "seeds": [0],
        "orders": [1, 2],
        "lambda_min": 1e-4,
        "lambda_max": 1e-1,
        "lambda_steps": 7,
        "fit_max_lambda": 1e-2,
        "activations": ["relu", "tanh"],
    }
    x = inputs(16)[0]
    tables = expansion_study.truncation_tables(settings, x, num_classes=3)
    rows = pd.DataFrame(tables["truncation"])
    assert len(rows) == 7 * 2 * 2 + 7 * 2  # ReLU: taylor and path; tanh: taylor only
    assert rows.loc[rows["activation"] == "tanh", "mask_change_fraction"].isna().all()
    for s in expansion_study.truncation_slopes(tables["truncation"], 1e-2):
        if s["decomposition"] == "path" or s["activation"] == "tanh":
            assert s["slope"] == pytest.approx(s["order"] + 1, abs=0.05)
    per_input = pd.DataFrame(tables["per_input"])
    assert set(per_input["activation"]) == {"relu"} and len(per_input) == 16 * 2
    fitted = per_input.dropna(subset=["slope"])
    assert len(fitted) > 0
    assert ((fitted["slope"] - (fitted["order"] + 1)).abs() < 0.05).all()
    # the first mask change is measured: no change below it, a change at it
    torch.manual_seed(0)
    model = models.build_model("mlp", (4,), 3, 8, 4, 1.0).double().eval()
    x0 = model.stem(x.double())
    lambdas = expansion_study.lambda_grid(settings)
    for _, row in per_input[per_input["order"] == 1].iterrows():
        first = row["first_mask_change_lambda"]
        below = [lam for lam in lambdas if lam < first]
        changed = [
            expansion.mask_changes_per_input(model, x0, [lam] * 4)[0][row["input"]].item()
            for lam in [*below, first]
            if math.isfinite(lam)
        ]
        assert not any(changed[: len(below)])
        if math.isfinite(first):
            assert changed[-1] > 0


def test_truncation_figure_shows_relu_the_smooth_control_and_the_inputs():
    from resdepth import expansion_plots

    settings = {"dataset": "d", "arch": "mlp", "width": 8, "depth": 4, "seeds": [0]}
    settings |= {"orders": [1, 2], "lambda_min": 1e-4, "lambda_max": 1e-1, "lambda_steps": 7}
    settings |= {"fit_max_lambda": 1e-2, "activations": ["relu", "tanh", "gelu"]}
    tables = expansion_study.truncation_tables(settings, inputs(16)[0], num_classes=3)
    truncation = pd.DataFrame(tables["truncation"])
    slopes = pd.DataFrame(expansion_study.truncation_slopes(tables["truncation"], 1e-2))
    fig = expansion_plots.truncation_figure(truncation, slopes, pd.DataFrame(tables["per_input"]))
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles[:3] == [
        "ReLU: Taylor at λ=0 (masks at x₀)",
        "ReLU: paths at λ (masks of the forward pass)",
        "ReLU units off their λ=0 mask",
    ]
    assert "gelu (smooth control): Taylor at λ=0" in titles
    assert "tanh (smooth control): Taylor at λ=0" in titles
    assert "ReLU, input by input (dashed: K+1)" in titles
    legend = [t.get_text() for t in fig.axes[3].get_legend().get_texts()]  # gelu panel
    assert legend[1].startswith("K=2: slope 3.0") and legend[1].endswith("(ideal 3)")


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


def test_bad_lambda_range_is_rejected():
    settings = {"lambda_min": 1e-2, "lambda_max": 1.0, "lambda_steps": 3, "fit_max_lambda": 1e-3}
    with pytest.raises(ValueError, match="fit_max_lambda"):
        expansion_study.lambda_grid(settings)
