import json
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TRAIN_SETTINGS
from training import train_run

from resdepth import capacity, data, grid, plots, train

SWEEP = dict(dataset="digits", arch="mlp", depth=16, width=8, lr=0.05, epochs=3, batch_size=64)
SWEEP.update(lambda_min=1 / 16, lambda_max=1.0, lambda_count=5, scaling=["inv"], seed=[0, 1])
GRID = dict(dataset=["digits"], arch=["mlp"], depth=[4, 16], scaling=["one", "inv"], seed=[0])
GRID.update(width=[8], lr=[0.05], epochs=[3], batch_size=[64])


def config(**sweep_overrides):
    return {
        "datasets": {"digits": {}},
        "grid": GRID,
        "training": {"gc": {"every": 1}},
        "capacity": {**SWEEP, **sweep_overrides},
    }


def test_lambdas_are_log_spaced_between_the_ends_and_named_exactly_by_run_ids():
    lambdas = grid.capacity_lambdas({**SWEEP, "lambda_count": 13})
    assert len(lambdas) == 13 and lambdas[0] == 0.0625 and lambdas[-1] == 1.0
    assert lambdas[6] == 0.25  # the log-midpoint of 1/16 and 1 is 1/sqrt(16)
    ratios = np.diff(np.log(lambdas))
    assert np.allclose(ratios, math.log(16) / 12, rtol=0.02)  # up to rounding to 3 digits
    for value in lambdas:
        token = grid.scaling_token(value)
        assert float(token.removeprefix("lam")) == value


def test_reversed_lambda_range_is_rejected_by_name():
    with pytest.raises(ValueError, match="lambda_min"):
        grid.capacity_lambdas({**SWEEP, "lambda_min": 2.0})


def test_a_lambda_equal_to_a_named_scaling_is_that_scaling():
    """Same tower, same seed, same run: the sweep reuses the named run (the grid's)."""
    scalings = grid.capacity_scalings({**SWEEP, "scaling": ["inv", "bn"]})
    assert scalings == ["inv", 0.125, "inv_sqrt", 0.5, "one", "bn"]
    at_depth_10 = {**SWEEP, "depth": 10, "lambda_min": 0.1, "lambda_count": 3, "scaling": []}
    assert grid.capacity_scalings(at_depth_10) == ["inv", "inv_sqrt", "one"]  # 0.316 = 1/√10


def test_sweep_runs_are_every_scaling_for_every_seed():
    runs = grid.capacity_runs(config())
    assert len(runs) == 5 * 2
    assert {c["depth"] for c in runs.values()} == {16}
    assert "digits-mlp-n16-lam0.125-w8-lr0.05-e3-b64-s1" in runs
    assert "digits-mlp-n16-inv_sqrt-w8-lr0.05-e3-b64-s0" in runs
    assert "digits-mlp-n16-lam0.25-w8-lr0.05-e3-b64-s0" not in runs


def test_clipped_sweep_runs_carry_the_clip_in_cell_and_run_id():
    runs = grid.capacity_runs(config(grad_clip=1.0))
    assert len(runs) == 5 * 2 and all(c["grad_clip"] == 1.0 for c in runs.values())
    assert "digits-mlp-n16-inv-w8-lr0.05-e3-b64-s0-clip1" in runs
    # not the grid's runs: every clipped run is trained by the sweep itself
    assert not set(runs) & set(grid.grid_runs(config()))
    assert set(grid.training_runs(config(grad_clip=1.0))) >= set(runs)
    assert grid.capacity_runs(config(grad_clip=None)) == grid.capacity_runs(config())


def test_clip_gradients_scales_the_total_norm_down_to_the_bound():
    layer = torch.nn.Linear(3, 2)
    for max_norm, expected in ((None, 10.0), (20.0, 10.0), (2.0, 2.0)):
        layer.weight.grad = torch.full((2, 3), 10.0 / math.sqrt(8))
        layer.bias.grad = torch.full((2,), 10.0 / math.sqrt(8))  # total norm 10
        train.clip_gradients(layer, max_norm)
        norm = torch.cat([layer.weight.grad.flatten(), layer.bias.grad]).norm().item()
        assert norm == pytest.approx(expected, rel=1e-6)


def test_clipping_keeps_a_run_past_the_stability_limit_finite():
    """λ=1 at depth 16 and lr 0.02 diverges at its second step unclipped (the default
    sweep's largest λ); clipped at 1 it trains."""
    digits = data.Prepared(num_classes=10, **data.digits_tensors(0.25, split_seed=0))
    cell = dict(dataset="digits", arch="mlp", depth=16, scaling="one", seed=0, width=64)
    cell.update(lr=0.02, epochs=2, batch_size=128)
    unclipped, _, _ = train_run(cell, digits, TRAIN_SETTINGS)
    clipped, history, _ = train_run({**cell, "grad_clip": 1.0}, digits, TRAIN_SETTINGS)
    assert unclipped["status"] == "diverged"
    assert clipped["status"] == "ok" and clipped["grad_clip"] == 1.0
    assert all(math.isfinite(row["train_loss"]) for row in history)


def test_sweep_adds_only_runs_the_grid_does_not_have():
    cfg = config()
    without_sweep = grid.training_runs({**cfg, "capacity": None})
    with_sweep = grid.training_runs(cfg)
    sweep = grid.capacity_runs(cfg)
    shared = set(sweep) & set(without_sweep)
    assert shared == {f"digits-mlp-n16-{s}-w8-lr0.05-e3-b64-s0" for s in ("inv", "one")}
    assert set(with_sweep) == set(without_sweep) | set(sweep)
    assert len(with_sweep) == len(without_sweep) + len(sweep) - 2


def test_sweep_without_gc_tracking_is_rejected_by_name():
    cfg = config()
    cfg["training"] = {"gc": {"every": 0}}
    with pytest.raises(ValueError, match="training.gc.every"):
        grid.capacity_runs(cfg)


# --- reading the sweep back ----------------------------------------------------------


def write_run(root, scaling, lam, seed, gc_by_epoch, status="ok", test_acc=0.9):
    """A run folder as the train rule writes it, with GC at the given epochs."""
    run_id = f"digits-mlp-n16-{grid.scaling_token(scaling)}-w8-lr0.05-e3-b64-s{seed}"
    folder = root / run_id
    folder.mkdir(parents=True)
    metrics = {"run_id": run_id, **{k: v for k, v in SWEEP.items() if k in grid.CELL_KEYS}}
    metrics.update(scaling=scaling, seed=seed, status=status, train_loss=0.1, test_acc=test_acc)
    metrics["lambda"] = lam
    if status != "ok":
        metrics.update(train_loss=None, test_acc=None)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    rows = [{"epoch": e, "train_loss": 0.5, "gc": g, "gc_stderr": 0.0} for e, g in gc_by_epoch]
    rows.insert(1, {"epoch": 1, "train_loss": 0.6, "gc": None, "gc_stderr": None})  # no GC
    pd.DataFrame(rows).to_csv(folder / "history.csv", index=False)
    return folder


def paths(folders, name):
    return [str(folder / name) for folder in folders]


def test_sweep_table_has_init_final_and_peak_gc(tmp_path):
    folders = [
        write_run(tmp_path, 0.25, 0.25, 0, [(0, 1.0), (2, 7.0), (3, 5.0)]),
        write_run(tmp_path, "inv", 0.0625, 0, [(0, 1.0), (2, 2.0), (3, 3.0)]),
        write_run(tmp_path, 1.0, 1.0, 0, [(0, 9.0)], status="diverged"),
    ]
    table, history = capacity.sweep_tables(
        paths(folders, "metrics.json"), paths(folders[::-1], "history.csv")
    )
    assert list(table.columns) == list(capacity.SWEEP_COLUMNS)
    assert list(table["lambda"]) == [0.0625, 0.25, 1.0]
    peaked = table.set_index("lambda").loc[0.25]
    assert (peaked["gc_init"], peaked["gc_final"], peaked["gc_peak"]) == (1.0, 5.0, 7.0)
    assert peaked["gc_peak_epoch"] == 2 and peaked["test_acc"] == 0.9
    diverged = table.set_index("lambda").loc[1.0]
    assert diverged["gc_init"] == 9.0
    assert np.isnan(diverged["gc_final"]) and np.isnan(diverged["gc_peak"])
    assert list(history.columns) == list(capacity.HISTORY_COLUMNS)
    assert len(history) == 3 + 3 + 1  # the epoch without GC is left out
    assert list(history[history["lambda"] == 0.25]["gc"]) == [1.0, 7.0, 5.0]


def test_sweep_table_refuses_runs_without_gc(tmp_path):
    folder = write_run(tmp_path, 0.25, 0.25, 0, [(0, 1.0)])
    pd.DataFrame({"epoch": [1], "gc": [None]}).to_csv(folder / "history.csv", index=False)
    with pytest.raises(ValueError, match="training.gc.every"):
        capacity.sweep_tables([folder / "metrics.json"], [folder / "history.csv"])


# --- the unimodality test ------------------------------------------------------------

LAMBDAS = [0.0625, 0.125, 0.25, 0.5, 1.0]


@pytest.mark.parametrize(
    "gc, shape, argmax",
    [
        ([1, 4, 9, 4, 1], "interior maximum", 0.25),
        ([1, 2, 4, 8, 16], "maximum at largest lambda", 1.0),
        ([16, 8, 4, 2, 1], "maximum at smallest lambda", 0.0625),
        ([1, 2, 3, 2.8, 4], "maximum at largest lambda", 1.0),  # a small dip is smoothed away
        ([100, 1, 1, 1, 100], "several maxima", 0.0625),
        ([3, 3, 3, 3, 3], "flat", 1.0),  # not a maximum at either end
        ([1, 3, 3, 3, 3], "maximum at largest lambda", 1.0),  # a plateau is one maximum
        ([1, 4], "too few lambdas", None),
    ],
)
def test_curve_shape(gc, shape, argmax):
    result = capacity.curve_shape(LAMBDAS[: len(gc)], gc)
    assert result["shape"] == shape
    assert result["argmax_lambda"] == argmax


def sweep_table(curves, named=None, diverged=()):
    """A gc_vs_lambda table: ``curves[seed]`` is final GC per λ of LAMBDAS."""
    rows = []
    for seed, curve in enumerate(curves):
        for lam, gc in zip(LAMBDAS, curve, strict=True):
            status = "diverged" if (lam, seed) in diverged else "ok"
            rows.append(dict(scaling=str(lam), **{"lambda": lam}, seed=seed, status=status))
            rows[-1].update(gc_final=gc, gc_peak=2 * gc)
    for scaling, lam, gc in named or []:
        rows.append(dict(scaling=scaling, seed=0, status="ok", gc_final=gc, gc_peak=gc))
        rows[-1]["lambda"] = lam
    return pd.DataFrame(rows).assign(dataset="digits", arch="mlp", depth=16)


def test_unimodality_counts_seeds_with_an_interior_maximum():
    table = sweep_table(
        [[1, 4, 9, 4, 1], [1, 2, 4, 9, 3], [1, 2, 4, 8, 16]],
        named=[("bn", 1.0, 1000.0)],  # bn has no fixed λ: not part of the curve
    )
    result = capacity.unimodality(table)
    final = result["gc_final"]
    assert final["fraction_interior_maximum"] == pytest.approx(2 / 3)
    assert [c["argmax_lambda"] for c in final["per_seed"]] == [0.25, 0.5, 1.0]
    assert final["median_argmax_lambda"] == pytest.approx(0.375)
    assert final["shapes"] == {"interior maximum": 2, "maximum at largest lambda": 1}
    assert final["seed_mean"]["shape"] == "interior maximum"
    assert final["verdict"].startswith("2 of 3 seeds have a single interior maximum")
    assert result["lambdas"] == LAMBDAS and result["seeds"] == [0, 1, 2]
    json.dumps(result)  # the rule writes it as JSON


def test_named_scalings_with_a_fixed_lambda_are_points_of_the_curve():
    table = sweep_table([[1, 4, 9, 4, 1]])
    table.loc[table["lambda"] == 0.0625, "scaling"] = "inv"
    table.loc[table["lambda"] == 1.0, "scaling"] = "one"
    curve = capacity.unimodality(table)["gc_final"]["per_seed"][0]
    assert curve["n_lambdas"] == 5 and curve["shape"] == "interior maximum"


def test_diverged_runs_are_listed_and_left_out_of_the_curve():
    table = sweep_table([[1, 4, 9, 4, 1e6]], diverged={(1.0, 0)})
    result = capacity.unimodality(table)
    assert result["diverged_runs"] == [{"lambda": 1.0, "seed": 0}]
    assert result["smallest_diverged_lambda"] == 1.0
    assert "diverged from lambda = 1" in result["gc_final"]["verdict"]
    assert result["gc_final"]["per_seed"][0]["n_lambdas"] == 4
    assert result["gc_final"]["per_seed"][0]["shape"] == "interior maximum"


def test_interior_maximum_pairs_seeds_and_measures_from_the_highest_interior_point():
    # Seed 1 is seed 0 scaled by 10: the log10 differences are the same for both seeds.
    table = sweep_table([[1, 4, 9, 4, 2], [10, 40, 90, 40, 20]], named=[("bn", 1.0, 1e3)])
    result = capacity.interior_maximum(table[table["scaling"] != "bn"], "gc_final", 0.95)
    assert result["interior_argmax_lambda"] == 0.25 and result["seeds"] == [0, 1]
    smallest, largest = result["minus_smallest"], result["minus_largest"]
    assert smallest["mean"] == pytest.approx(math.log10(9))
    assert largest["mean"] == pytest.approx(math.log10(4.5))
    # no seed spread, exact GC: a zero-width interval at the difference
    assert smallest["low"] == pytest.approx(smallest["high"])
    assert result["mean_log10"][0] == pytest.approx(0.5)


def test_interior_maximum_interval_carries_the_gc_standard_error():
    table = sweep_table([[1, 4, 9, 4, 2], [1, 4, 9, 4, 2]]).assign(gc_final_stderr=0.9)
    smallest = capacity.interior_maximum(table, "gc_final", 0.95)["minus_smallest"]
    # Var(log10 GC) = (0.9 / (GC ln 10))² at λ=0.25 (GC 9) and at the smallest λ (GC 1)
    variance = 2 * ((0.9 / (9 * math.log(10))) ** 2 + (0.9 / math.log(10)) ** 2)
    assert smallest["measurement_half_width"] == pytest.approx(1.959964 * variance**0.5 / 2)
    assert smallest["high"] - smallest["mean"] == pytest.approx(smallest["measurement_half_width"])


@pytest.mark.parametrize(
    "n_seeds, largest_lambda, reason", [(1, 1.0, "1 seed"), (2, 0.125, "2 λ values")]
)
def test_interior_maximum_needs_two_seeds_and_three_lambdas(n_seeds, largest_lambda, reason):
    table = sweep_table([[1, 4, 9, 4, 2]] * n_seeds)
    table = table[table["lambda"] <= largest_lambda]
    assert reason in capacity.interior_maximum(table, "gc_final", 0.95)["reason"]


# --- figures -------------------------------------------------------------------------


@pytest.fixture
def sweep_and_history(tmp_path):
    """Two seeds of a 5-λ sweep plus bn; λ=1 diverges for seed 1."""
    folders = []
    for seed in (0, 1):
        for lam in LAMBDAS:
            gc = [(0, 1.0), (2, 10 * lam * (1 + seed)), (3, 8 * lam * (1 + seed))]
            status = "diverged" if (lam, seed) == (1.0, 1) else "ok"
            folders.append(write_run(tmp_path, lam, lam, seed, gc, status, test_acc=0.5 + lam / 4))
        folders.append(write_run(tmp_path, "bn", 1.0, seed, [(0, 1.0), (2, 2.0), (3, 3.0)]))
    table, history = capacity.sweep_tables(
        paths(folders, "metrics.json"), paths(folders, "history.csv")
    )
    table.to_csv(tmp_path / "sweep.csv", index=False)  # read back as the plot rule does
    history.to_csv(tmp_path / "history.csv", index=False)
    as_text = {"scaling": str}
    return tuple(pd.read_csv(tmp_path / f"{n}.csv", dtype=as_text) for n in ("sweep", "history"))


def test_gc_figure_draws_the_geometric_mean_over_seeds(sweep_and_history):
    sweep, _ = sweep_and_history
    fig = plots.capacity_gc_figure(sweep)
    final_panel = fig.axes[0]
    line = final_panel.get_lines()[0]  # the fixed-λ mean
    expected = [8 * lam * math.sqrt(2) for lam in LAMBDAS[:-1]] + [8.0]  # λ=1: seed 0 only
    assert list(line.get_xdata()) == LAMBDAS
    assert np.allclose(line.get_ydata(), expected)
    assert final_panel.get_xscale() == "log" and final_panel.get_yscale() == "log"
    plt.close(fig)


def test_capacity_figures_are_saved(sweep_and_history, tmp_path):
    sweep, history = sweep_and_history
    figures = [
        plots.capacity_gc_figure(sweep),
        plots.capacity_accuracy_figure(sweep),
        plots.capacity_training_figure(sweep, history),
    ]
    for index, fig in enumerate(figures):
        pdf, png = plots.save_figure(fig, tmp_path / f"figure{index}")
        assert pdf.read_bytes().startswith(b"%PDF") and png.stat().st_size > 10_000
    training_lines = figures[2].axes[0].get_lines()
    assert len(training_lines) == len(LAMBDAS) + 1  # one per fixed λ, one for bn
