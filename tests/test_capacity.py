import json
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TRAIN_SETTINGS
from training import train_run

from resdepth import capacity, capacity_plots, data, fits, grid, plots, train
from resdepth.scalings import scaling_token

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
        token = scaling_token(value)
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


def test_clipped_copies_are_the_fixed_lambdas_past_their_bound_with_the_clip_in_the_id():
    cfg = config(clipped={"grad_clip": 1.0, "lambda_min": 0.5}, scaling=["inv", "bn"])
    runs = grid.capacity_runs(cfg)
    clipped = {k: c for k, c in runs.items() if c.get("grad_clip")}
    # λ = 0.5 and one (λ = 1), for both seeds; bn has no fixed λ and is never copied
    assert sorted(clipped) == [
        f"digits-mlp-n16-{s}-w8-lr0.05-e3-b64-s{seed}-clip1"
        for s in ("lam0.5", "one")
        for seed in (0, 1)
    ]
    assert all(c["grad_clip"] == 1.0 for c in clipped.values())
    # the unclipped sweep is all there, and no clipped run is the grid's
    assert set(runs) - set(clipped) == set(grid.capacity_runs(config(scaling=["inv", "bn"])))
    assert not set(clipped) & set(grid.grid_runs(cfg))
    assert grid.capacity_runs(config(clipped=None)) == grid.capacity_runs(config())


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


LOGIT_VAR = 4.0  # the logits' variance at epoch 0 of a written run (plus its epoch)


def write_run(root, scaling, lam, seed, gc_by_epoch, status="ok", test_acc=0.9, **extra):
    """A run folder as the train rule writes it, with GC at the given epochs."""
    clip = f"-clip{extra['grad_clip']:g}" if extra.get("grad_clip") else ""
    run_id = f"digits-mlp-n16-{scaling_token(scaling)}-w8-lr0.05-e3-b64-s{seed}{clip}"
    folder = root / run_id
    folder.mkdir(parents=True)
    metrics = {"run_id": run_id, **{k: v for k, v in SWEEP.items() if k in grid.CELL_KEYS}}
    metrics.update(scaling=scaling, seed=seed, status=status, train_loss=0.1, test_acc=test_acc)
    metrics.update(extra)
    metrics["lambda"] = lam
    if status != "ok":
        metrics.update(train_loss=None, test_acc=None)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    rows = [
        {"epoch": e, "train_loss": 0.5, "gc": g, "gc_stderr": 0.0, "logit_var": LOGIT_VAR + e}
        for e, g in gc_by_epoch
    ]
    rows.insert(1, {"epoch": 1, "train_loss": 0.6, "gc": None, "gc_stderr": None})  # no GC
    pd.DataFrame(rows).to_csv(folder / "history.csv", index=False)
    return folder


def paths(folders, name):
    return [str(folder / name) for folder in folders]


CLASSES = {"digits": 10}


def test_sweep_table_has_init_final_peak_gc_and_their_ratio(tmp_path):
    folders = [
        write_run(tmp_path, 0.25, 0.25, 0, [(0, 1.0), (2, 7.0), (3, 5.0)]),
        write_run(tmp_path, "inv", 0.0625, 0, [(0, 1.0), (2, 2.0), (3, 3.0)]),
        write_run(tmp_path, 1.0, 1.0, 0, [(0, 9.0), (2, 4.0)], status="diverged"),
    ]
    table, history = capacity.sweep_tables(
        paths(folders, "metrics.json"), paths(folders[::-1], "history.csv"), CLASSES
    )
    assert list(table.columns) == list(capacity.SWEEP_COLUMNS)
    assert list(table["lambda"]) == [0.0625, 0.25, 1.0]
    peaked = table.set_index("lambda").loc[0.25]
    assert (peaked["gc_init"], peaked["gc_final"], peaked["gc_peak"]) == (1.0, 5.0, 7.0)
    assert peaked["gc_final_over_init"] == 5.0 and peaked["gc_peak_epoch"] == 2
    assert peaked["gc_final_scale_free"] == 5.0 / (LOGIT_VAR + 3)  # the last epoch's spread
    assert peaked["test_acc"] == 0.9 and not peaked["flag_gc_peak_at_init"]
    diverged = table.set_index("lambda").loc[1.0]
    assert diverged["gc_init"] == 9.0 and diverged["gc_peak_epoch"] == 0
    assert diverged["flag_gc_peak_at_init"]  # its GC only fell before it diverged
    assert np.isnan(diverged["gc_final"]) and np.isnan(diverged["gc_peak"])
    assert np.isnan(diverged["gc_final_scale_free"])
    assert list(history.columns) == list(capacity.HISTORY_COLUMNS)
    assert len(history) == 3 + 3 + 2  # the epoch without GC is left out
    assert list(history[history["lambda"] == 0.25]["gc"]) == [1.0, 7.0, 5.0]


def test_sweep_table_flags_gc_peaking_at_init_and_loss_above_chance(tmp_path):
    falls = write_run(tmp_path, 0.5, 0.5, 0, [(0, 9.0), (2, 4.0), (3, 5.0)])
    stuck = write_run(tmp_path, 0.25, 0.25, 0, [(0, 1.0), (3, 2.0)], train_loss=2.31)
    at_chance = write_run(tmp_path, 0.125, 0.125, 0, [(0, 1.0), (3, 2.0)], train_loss=2.302)
    table, _ = capacity.sweep_tables(
        paths([falls, stuck, at_chance], "metrics.json"),
        paths([falls, stuck, at_chance], "history.csv"),
        CLASSES,
    )
    flags = table.set_index("lambda")[["flag_gc_peak_at_init", "flag_train_loss_above_chance"]]
    assert flags.loc[0.5].tolist() == [True, False]
    assert flags.loc[0.25].tolist() == [False, True]  # 2.31 > ln 10 = 2.3026
    assert flags.loc[0.125].tolist() == [False, False]  # 2.302 < ln 10


def test_sweep_table_refuses_runs_without_gc_or_a_manifest(tmp_path):
    folder = write_run(tmp_path, 0.25, 0.25, 0, [(0, 1.0)])
    with pytest.raises(ValueError, match="no data manifest for dataset 'digits'"):
        capacity.sweep_tables([folder / "metrics.json"], [folder / "history.csv"], {})
    pd.DataFrame({"epoch": [1], "gc": [None]}).to_csv(folder / "history.csv", index=False)
    with pytest.raises(ValueError, match="training.gc.every"):
        capacity.sweep_tables([folder / "metrics.json"], [folder / "history.csv"], CLASSES)


# --- the stability limit and the shape of the curves ---------------------------------

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


def sweep_table(curves, named=None, diverged=(), clipped=()):
    """A gc_vs_lambda table: ``curves[seed]`` is final GC per λ of LAMBDAS; ``clipped``
    lists (λ, seed, gc) of clipped runs."""
    rows = []
    for seed, curve in enumerate(curves):
        for lam, gc in zip(LAMBDAS, curve, strict=True):
            status = "diverged" if (lam, seed) in diverged else "ok"
            rows.append(dict(scaling=str(lam), **{"lambda": lam}, seed=seed, status=status))
            rows[-1].update(gc_final=gc, gc_peak=2 * gc, grad_clip=None)
    for scaling, lam, gc in named or []:
        rows.append(dict(scaling=scaling, seed=0, status="ok", gc_final=gc, gc_peak=gc))
        rows[-1]["lambda"] = lam
    for lam, seed, gc in clipped:
        rows.append(dict(scaling=str(lam), seed=seed, status="ok", gc_final=gc, gc_peak=gc))
        rows[-1].update({"lambda": lam, "grad_clip": 1.0})
    settings = dict(dataset="digits", arch="mlp", depth=16, width=8, lr=0.05, epochs=3)
    return pd.DataFrame(rows).assign(**settings, batch_size=64)


def test_stability_limit_is_the_smallest_unclipped_lambda_with_a_diverged_seed():
    table = sweep_table(
        [[1, 4, 9, 4, 1], [1, 4, 9, 4, 1]],
        diverged={(0.5, 1), (1.0, 0), (1.0, 1)},
        clipped=[(0.125, 0, 5.0)],  # clipped: never part of the limit or the stable runs
    )
    limit = capacity.stability_limit(table)
    assert limit["limit_lambda"] == 0.5
    assert limit["diverged_runs"] == [
        {"lambda": 0.5, "seed": 1},
        {"lambda": 1.0, "seed": 0},
        {"lambda": 1.0, "seed": 1},
    ]
    stable = capacity.stable_runs(table)
    assert sorted(stable["lambda"].unique()) == [0.0625, 0.125, 0.25]
    assert stable["grad_clip"].isna().all() and (stable["status"] == "ok").all()
    assert capacity.stability_limit(sweep_table([[1, 4, 9, 4, 1]]))["limit_lambda"] is None


def test_unimodality_describes_every_seed_on_the_stable_range():
    table = sweep_table(
        [[1, 4, 9, 4, 1], [1, 2, 4, 9, 3], [1, 2, 4, 8, 16]],
        named=[("bn", 1.0, 1000.0)],  # bn has no fixed λ: not part of the curve
    )
    (result,) = capacity.unimodality(table)["sweeps"]
    final = result["gc_final"]
    assert final["fraction_interior_maximum"] == pytest.approx(2 / 3)
    assert [c["argmax_lambda"] for c in final["per_seed"]] == [0.25, 0.5, 1.0]
    assert final["shapes"] == {"interior maximum": 2, "maximum at largest lambda": 1}
    assert final["seed_mean"]["shape"] == "interior maximum"
    assert final["description"].startswith("2 of 3 seeds have a single interior maximum")
    assert result["lambdas"] == LAMBDAS and result["seeds"] == [0, 1, 2]
    json.dumps(capacity.unimodality(table))  # the rule writes it as JSON


def test_named_scalings_with_a_fixed_lambda_are_points_of_the_curve():
    table = sweep_table([[1, 4, 9, 4, 1]])
    table.loc[table["lambda"] == 0.0625, "scaling"] = "inv"
    table.loc[table["lambda"] == 1.0, "scaling"] = "one"
    curve = capacity.unimodality(table)["sweeps"][0]["gc_final"]["per_seed"][0]
    assert curve["n_lambdas"] == 5 and curve["shape"] == "interior maximum"


def test_the_curves_stop_at_the_stability_limit():
    table = sweep_table([[1, 4, 9, 4, 1e6], [1, 4, 9, 4, 1e6]], diverged={(0.5, 0)})
    (result,) = capacity.unimodality(table)["sweeps"]
    assert result["limit_lambda"] == 0.5 and result["lambdas"] == [0.0625, 0.125, 0.25]
    assert "Stability limit lambda = 0.5" in result["gc_final"]["description"]
    # λ = 0.5 trained for seed 1, but it is at the limit: not in the curve
    assert result["gc_final"]["per_seed"][1]["n_lambdas"] == 3


def test_peak_test_pairs_seeds_and_measures_from_the_highest_interior_point():
    # Seed 1 is seed 0 scaled by 10: the log10 differences are the same for both seeds.
    table = sweep_table([[1, 4, 9, 4, 2], [10, 40, 90, 40, 20]])
    result = capacity.peak_test(table, "gc_final", 0.95, 5, 0.8, 0.3)
    assert result["interior_argmax_lambda"] == 0.25 and result["seeds"] == [0, 1]
    smallest, largest = result["minus_smallest"], result["minus_largest"]
    assert smallest["mean"] == pytest.approx(math.log10(9), abs=1e-14)
    assert largest["mean"] == pytest.approx(math.log10(4.5), abs=1e-14)
    # no seed spread, exact GC: a zero-width interval at the difference
    assert smallest["low"] == pytest.approx(smallest["high"], abs=1e-14)
    assert result["mean_log10"][0] == pytest.approx(0.5, abs=1e-14)
    assert result["shape"] == capacity.ONE_PEAK and result["second_peak"] is None


def test_peak_test_interval_carries_the_gc_standard_error():
    table = sweep_table([[1, 4, 9, 4, 2], [1, 4, 9, 4, 2]]).assign(gc_final_stderr=0.9)
    smallest = capacity.peak_test(table, "gc_final", 0.95, 5, 0.8, 0.3)["minus_smallest"]
    # Var(log10 GC) = (0.9 / (GC ln 10))² at λ=0.25 (GC 9) and at the smallest λ (GC 1)
    variance = 2 * ((0.9 / (9 * math.log(10))) ** 2 + (0.9 / math.log(10)) ** 2)
    assert smallest["measurement_half_width"] == pytest.approx(
        1.959963984540054 * variance**0.5 / 2, rel=1e-12
    )
    assert smallest["high"] - smallest["mean"] == pytest.approx(
        smallest["measurement_half_width"], rel=1e-12
    )


@pytest.mark.parametrize(
    "n_seeds, largest_lambda, reason",
    [(1, 1.0, "1 seed(s) at every stable λ"), (2, 0.5, "4 λ in the stable range, 5 needed")],
)
def test_peak_test_needs_two_seeds_and_enough_lambdas(n_seeds, largest_lambda, reason):
    table = sweep_table([[1, 4, 9, 4, 2]] * n_seeds)
    table = table[table["lambda"] <= largest_lambda]
    assert reason in capacity.peak_test(table, "gc_final", 0.95, 5, 0.8, 0.3)["reason"]


def test_peak_test_second_peak_search_is_bonferroni_corrected():
    """A dip of 0.1 decade (0.10, 0.07, 0.13 for the three seeds) between two peaks: one
    comparison at 95 % resolves it, the 7 pairs on the wrong side of the peak at λ = 0.5,
    corrected to 1 − 0.05/7 each, do not."""
    peaks = [9.0, 9.2, 9.4]
    dips = [p / 10**d for p, d in zip(peaks, (0.10, 0.07, 0.13), strict=True)]
    tops = [9.5, 9.6, 9.7]
    dip = [[1, p, d, t, 1] for p, d, t in zip(peaks, dips, tops, strict=True)]
    table = sweep_table(dip)
    result = capacity.peak_test(table, "gc_final", 0.95, 5, 0.8, 0.3)
    stable = capacity.stable_runs(table)
    log_gc = np.log10(stable.pivot(index="seed", columns="lambda", values="gc_final"))
    alone = fits.paired_interval(log_gc[0.125] - log_gc[0.25], [0, 0, 0], 0.95)
    assert alone["low"] > 0  # the dip alone is beyond the noise
    assert result["second_peak"] is None  # corrected over the three pairs left of the peak
    assert result["shape"] == capacity.UNRESOLVED  # two local maxima in the seed mean


# --- figures -------------------------------------------------------------------------


@pytest.fixture
def sweep_and_history(tmp_path):
    """Two seeds of a 5-λ sweep plus bn; λ=1 diverges for seed 1 (unclipped) and is
    trained again clipped for both seeds; seed 0 at λ=0.5 ends above ln(classes)."""
    folders = []
    for seed in (0, 1):
        gc = [(0, 500.0), (2, 100.0), (3, 50.0)]  # GC highest at init: flagged
        folders.append(write_run(tmp_path, 1.0, 1.0, seed, gc, test_acc=0.3, grad_clip=1.0))
    for seed in (0, 1):
        for lam in LAMBDAS:
            gc = [(0, 0.01), (2, 10 * lam * (1 + seed)), (3, 8 * lam * (1 + seed))]
            status = "diverged" if (lam, seed) == (1.0, 1) else "ok"
            loss = 2.5 if (lam, seed) == (0.5, 0) else 0.1
            folders.append(
                write_run(tmp_path, lam, lam, seed, gc, status, 0.5 + lam / 4, train_loss=loss)
            )
        folders.append(write_run(tmp_path, "bn", 1.0, seed, [(0, 1.0), (2, 2.0), (3, 3.0)]))
    table, history = capacity.sweep_tables(
        paths(folders, "metrics.json"), paths(folders, "history.csv"), CLASSES
    )
    table.to_csv(tmp_path / "sweep.csv", index=False)  # read back as the plot rule does
    history.to_csv(tmp_path / "history.csv", index=False)
    as_text = {"scaling": str}
    return tuple(pd.read_csv(tmp_path / f"{n}.csv", dtype=as_text) for n in ("sweep", "history"))


def test_gc_figure_draws_the_geometric_mean_over_seeds(sweep_and_history):
    sweep, _ = sweep_and_history
    fig = capacity_plots.capacity_gc_figure(sweep)
    final_panel = fig.axes[0]
    line = final_panel.get_lines()[0]  # the fixed-λ mean
    expected = [8 * lam * math.sqrt(2) for lam in LAMBDAS[:-1]] + [8.0]  # λ=1: seed 0 only
    assert list(line.get_xdata()) == LAMBDAS
    assert np.allclose(line.get_ydata(), expected)
    assert final_panel.get_xscale() == "log" and final_panel.get_yscale() == "log"
    plt.close(fig)


def test_gc_figure_sets_the_clipped_runs_apart_and_marks_limit_and_flags(sweep_and_history):
    sweep, _ = sweep_and_history
    fig = capacity_plots.capacity_gc_figure(sweep)
    final_panel = fig.axes[0]
    lines = {line.get_label(): line for line in final_panel.get_lines()}
    clipped = lines["gradient norm clipped at 1: not in C4's test"]
    assert list(clipped.get_xdata()) == [1.0] and clipped.get_ydata()[0] == pytest.approx(50)
    assert list(lines["stability limit"].get_xdata()) == [1.0, 1.0]  # seed 1 diverged at 1
    assert lines["unclipped: mean over seeds"].get_ydata()[-1] == pytest.approx(8.0)
    flagged = [c for c in final_panel.collections if c.get_label() == capacity_plots.FLAGGED_LABEL]
    # the clipped λ=1 runs (GC highest at init) and seed 0 at λ=0.5 (loss above ln 10)
    assert sorted(map(tuple, flagged[0].get_offsets())) == [(0.5, 4.0), (1.0, 50.0), (1.0, 50.0)]
    assert "unclipped runs decide C4; gradient norm clipped at 1" in fig._suptitle.get_text()
    plt.close(fig)


def test_training_figure_leaves_clipped_and_diverged_runs_out(sweep_and_history):
    sweep, history = sweep_and_history
    fig = capacity_plots.capacity_training_figure(sweep, history)
    assert len(fig.axes[0].get_lines()) == len(LAMBDAS) + 1  # one per fixed λ, one for bn
    assert "3 diverged or clipped runs not shown" in fig._suptitle.get_text()
    plt.close(fig)


def test_capacity_figures_are_saved(sweep_and_history, tmp_path):
    sweep, history = sweep_and_history
    figures = [
        capacity_plots.capacity_gc_figure(sweep),
        capacity_plots.capacity_accuracy_figure(sweep),
        capacity_plots.capacity_training_figure(sweep, history),
    ]
    for index, fig in enumerate(figures):
        pdf, png = plots.save_figure(fig, tmp_path / f"figure{index}")
        assert pdf.read_bytes().startswith(b"%PDF") and png.stat().st_size > 10_000
    training_lines = figures[2].axes[0].get_lines()
    assert len(training_lines) == len(LAMBDAS) + 1  # one per fixed λ, one for bn


def test_final_gc_standard_error_is_the_last_epochs(tmp_path):
    """Hutchinson GC has a standard error per measurement: the final GC's is the last
    epoch's, not the peak's or the first."""
    folder = write_run(tmp_path, 0.25, 0.25, 0, [(0, 1.0), (2, 7.0), (3, 5.0)])
    history = pd.read_csv(folder / "history.csv")
    history["gc_stderr"] = [0.1, None, 0.7, 0.5]
    history.to_csv(folder / "history.csv", index=False)
    table, _ = capacity.sweep_tables([folder / "metrics.json"], [folder / "history.csv"], CLASSES)
    assert table.loc[0, "gc_final_stderr"] == 0.5


def test_peak_test_takes_its_peak_among_interior_lambdas_only():
    """The highest point is at the largest λ; the test measures from the highest interior
    point (0.5), whose difference from that end is negative: no interior peak."""
    table = sweep_table([[1, 2, 3, 4, 9], [1.1, 2.1, 3.1, 4.2, 9.5]])
    result = capacity.peak_test(table, "gc_final", 0.95, 5, 0.8, 0.3)
    assert result["interior_argmax_lambda"] == 0.5
    assert result["minus_largest"]["high"] < 0
    assert result["shape"] == capacity.NO_INTERIOR_PEAK
