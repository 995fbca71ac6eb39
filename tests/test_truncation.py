"""Claim C1's truncation study (resdepth.truncation): slopes of known power laws, the
per-input fit's window, and the tables of ReLU and smooth towers."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import inputs

from resdepth import expansion, models, truncation


def test_truncation_slopes_recover_a_known_power_law():
    rows = [
        {"dataset": "d", "arch": "mlp", "activation": a, "width": 4, "depth": 2, "seed": 0}
        | {"lambda": lam, "decomposition": "taylor", "order": 2, "rel_error": c * lam**p}
        for a, c, p in (("relu", 5, 3), ("tanh", 2, 3.5))
        for lam in (1e-3, 1e-2, 1e-1, 1.0)
    ]
    slopes = truncation.truncation_slopes(rows, fit_max_lambda=0.2)
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
    rows = truncation._per_input_slopes(
        {"seed": 0}, lambdas, [2], errors[:, None, :], floors, first, fit_max_lambda=0.05
    )
    assert [r["slope"] for r in rows[:2]] == pytest.approx([3, 3])
    assert rows[0]["fit_lambda_min"] == pytest.approx(lambdas[1])  # λ[0]: round-off
    assert rows[0]["fit_lambda_max"] == pytest.approx(lambdas[5])  # below the change
    assert rows[1]["fit_lambda_max"] == pytest.approx(lambdas[7])  # up to fit_max_lambda
    assert math.isnan(rows[2]["slope"]) and rows[2]["n_points"] == 0
    # the flip is bracketed between the grid points around it
    assert (rows[0]["first_flip_lambda_low"], rows[0]["first_flip_lambda_high"]) == (
        lambdas[5],
        lambdas[6],
    )
    assert (rows[1]["first_flip_lambda_low"], rows[1]["first_flip_lambda_high"]) == (
        lambdas[-1],
        math.inf,
    )


def test_a_flip_before_the_grid_is_bracketed_from_zero_and_never_fitted():
    lambdas = np.geomspace(1e-3, 1e-1, 5)
    errors = torch.tensor(lambdas[:, None, None] ** 2 * np.ones((5, 1, 1)))
    first = torch.tensor([lambdas[0]], dtype=torch.float64)
    (row,) = truncation._per_input_slopes(
        {}, lambdas, [1], errors, torch.zeros(5, 1), first, fit_max_lambda=1.0
    )
    assert (row["first_flip_lambda_low"], row["first_flip_lambda_high"]) == (0.0, lambdas[0])
    assert row["n_points"] == 0 and math.isnan(row["slope"])


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
    tables = truncation.truncation_tables(settings, x, num_classes=3)
    rows = pd.DataFrame(tables["truncation"])
    assert len(rows) == 7 * 2 * 2 + 7 * 2  # ReLU: taylor and path; tanh: taylor only
    assert rows.loc[rows["activation"] == "tanh", "mask_change_fraction"].isna().all()
    for s in truncation.truncation_slopes(tables["truncation"], 1e-2):
        if s["decomposition"] == "path" or s["activation"] == "tanh":
            assert s["slope"] == pytest.approx(s["order"] + 1, abs=0.05)
    per_input = pd.DataFrame(tables["per_input"])
    assert set(per_input["activation"]) == {"relu"} and len(per_input) == 16 * 2
    fitted = per_input.dropna(subset=["slope"])
    assert len(fitted) > 0
    assert ((fitted["slope"] - (fitted["order"] + 1)).abs() < 0.05).all()
    # the first flip is bracketed: no flip up to the low end, a flip at the high end
    torch.manual_seed(0)
    model = models.build_model("mlp", (4,), 3, 8, 4, 1.0).double().eval()
    x0 = model.stem(x.double())
    lambdas = truncation.lambda_grid(settings)
    for _, row in per_input[per_input["order"] == 1].iterrows():
        first = row["first_flip_lambda_high"]
        assert row["first_flip_lambda_low"] == max([0.0, *(lam for lam in lambdas if lam < first)])
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
    tables = truncation.truncation_tables(settings, inputs(16)[0], num_classes=3)
    rows = pd.DataFrame(tables["truncation"])
    slopes = pd.DataFrame(truncation.truncation_slopes(tables["truncation"], 1e-2))
    fig = expansion_plots.truncation_figure(rows, slopes, pd.DataFrame(tables["per_input"]))
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


def test_bad_lambda_range_is_rejected():
    settings = {"lambda_min": 1e-2, "lambda_max": 1.0, "lambda_steps": 3, "fit_max_lambda": 1e-3}
    with pytest.raises(ValueError, match="fit_max_lambda"):
        truncation.lambda_grid(settings)
