"""Each claim's verdict follows the data: small synthetic result tables flip it between
holds, does not hold and not measured (C5: measured and not measured)."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import default_config

from resdepth import claims
from resdepth.claims import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, MEASURED, NOT_MEASURED

THRESHOLDS = default_config()["claims"]


# --- C1: truncation slopes -------------------------------------------------------------


def slopes_table(slope_by_order, activation="tanh", seeds=(0, 1), decomposition="taylor"):
    return pd.DataFrame(
        [
            {
                "dataset": "digits",
                "arch": "mlp",
                "activation": activation,
                "width": 64,
                "depth": 16,
                "seed": seed,
                "decomposition": decomposition,
                "order": order,
                "slope": slope,
                "fit_lambda_min": 1e-4,
                "fit_lambda_max": 1e-2,
                "n_points": 9,
            }
            for seed in seeds
            for order, slope in slope_by_order.items()
        ]
    )


#: ReLU batch slopes: orders 2 and 3 stuck near 2.5 (mask changes), as measured.
RELU_BATCH = {1: 2.0, 2: 2.5, 3: 2.5}


def per_input_table(slopes_by_order, n_unfitted=0):
    """ReLU per-input slopes: ``slopes_by_order[K]`` lists one input's slope each; plus
    ``n_unfitted`` inputs per order with no fit (a mask change too early)."""
    rows = []
    for order, slopes in slopes_by_order.items():
        for i, slope in enumerate([*slopes, *[float("nan")] * n_unfitted]):
            rows.append({"activation": "relu", "input": i, "order": order, "slope": slope})
    return pd.DataFrame(rows)


GOOD_INPUTS = {k: [k + 1.0] * 9 + [k + 1.2] for k in (1, 2, 3)}


def truncation_rows(growth=1.0):
    """ReLU mask-change fractions growing as λ^growth."""
    return pd.DataFrame(
        [
            {"activation": "relu", "decomposition": "taylor", "lambda": lam}
            | {"order": 1, "mask_change_fraction": 0.3 * lam**growth}
            for lam in (1e-4, 1e-3, 1e-2, 1e-1)
        ]
    )


def c1_tables(smooth=None, relu=RELU_BATCH, inputs=GOOD_INPUTS, n_unfitted=0):
    smooth = {1: 2.0, 2: 3.02, 3: 3.95} if smooth is None else smooth
    slopes = pd.concat(
        [
            slopes_table(smooth),
            slopes_table(relu, activation="relu"),
            slopes_table({1: 2.0, 2: 3.0, 3: 4.0}, activation="relu", decomposition="path"),
        ]
    )
    return slopes, per_input_table(inputs, n_unfitted), truncation_rows()


@pytest.mark.parametrize(
    "tables, verdict",
    [
        (c1_tables(), HOLDS),  # the ReLU batch slopes of 2.5 do not count against it
        (c1_tables(smooth={1: 2.0, 2: 2.0, 3: 2.0}), DOES_NOT_HOLD),
        (c1_tables(smooth={1: 2.0, 2: 3.31, 3: 4.0}), DOES_NOT_HOLD),
        (c1_tables(inputs={k: [k + 1.0] * 9 + [k + 2] for k in (1, 2, 3)}), HOLDS),  # 90%
        (c1_tables(inputs={k: [k + 1.0] * 8 + [k + 2] * 2 for k in (1, 2, 3)}), DOES_NOT_HOLD),
        (c1_tables(n_unfitted=5), HOLDS),  # unfitted inputs are not in the share
        (c1_tables(inputs={1: [2.0], 2: [3.0], 3: []}), NOT_MEASURED),  # none fitted, K=3
        (c1_tables(smooth={1: 2.0, 2: 3.0}), NOT_MEASURED),  # order 3 not computed
        ((c1_tables()[0].query("activation == 'relu'"), *c1_tables()[1:]), NOT_MEASURED),
        ((c1_tables()[0], None, None), NOT_MEASURED),  # no per-input table
        ((None, None, None), NOT_MEASURED),
    ],
)
def test_c1_verdict_rests_on_the_smooth_control_and_the_per_input_test(tables, verdict):
    check = claims.check_c1(*tables, THRESHOLDS["C1"])
    assert check.verdict == verdict


def test_c1_states_the_exactness_check_and_the_share_of_inputs_fitted():
    check = claims.check_c1(*c1_tables(n_unfitted=30), THRESHOLDS["C1"])
    orders = check.measured["relu_exactness_below_first_flip"]["orders"]
    assert orders["1"]["share_fitted"] == pytest.approx(10 / 40)
    assert "(25% of 40)" in check.summary
    assert "can fail only through a bug" in check.test


def test_c1_mask_flip_growth_needs_three_points():
    rows = truncation_rows()
    check = claims.check_c1(*c1_tables()[:2], rows[rows["lambda"] >= 1e-3], THRESHOLDS["C1"])
    assert check.measured["relu_batch"]["mask_change_fraction_slope"] is None  # 2 points


def test_c1_slope_exactly_at_the_tolerance_is_within_it():
    at_tolerance = {**THRESHOLDS["C1"], "slope_tolerance": 0.25}  # exact in binary
    tables = c1_tables(smooth={1: 2.0, 2: 3.25, 3: 4.0})
    assert claims.check_c1(*tables, at_tolerance).verdict == HOLDS
    tables = c1_tables(smooth={1: 2.0, 2: 3.0, 3: 4.0}, inputs={k: [k + 1.25] for k in (1, 2, 3)})
    assert claims.check_c1(*tables, at_tolerance).verdict == HOLDS


def test_c1_reports_the_relu_batch_exponent_and_its_mechanism():
    check = claims.check_c1(*c1_tables(), THRESHOLDS["C1"])
    relu = check.measured["relu_batch"]
    assert relu["batch_slopes"] == {"1": 2.0, "2": 2.5, "3": 2.5}
    assert relu["mask_change_fraction_slope"] == pytest.approx(1.0)
    assert relu["mask_change_fraction_at_fit_max"] == pytest.approx(0.3 * 1e-2)
    assert "grows as λ^1" in check.summary and "reported, not judged" in check.summary
    assert check.summary.startswith("ReLU towers, whole batch")  # the headline comes first
    share = check.measured["relu_exactness_below_first_flip"]["orders"]["2"]
    assert share == {
        "n_inputs": 10,
        "n_fitted": 10,
        "share_fitted": 1.0,
        "share_within_tolerance": 1.0,
        "median_slope": 3.0,
    }
    assert check.measured["smooth_control"]["slopes"]["tanh"]["2"] == pytest.approx(3.02)


# --- C2: init norms --------------------------------------------------------------------


def norms_table(growth, depths=(1, 10, 100, 1000), seeds=(0, 1), scalings=None):
    """``growth``: scaling -> function of depth giving log10 ‖x_n‖/‖x_0‖."""
    rows = [
        {"scaling": scaling, "depth": depth, "seed": seed, "log10_rel_norm": f(depth) + 0.01 * seed}
        for scaling, f in growth.items()
        if scalings is None or scaling in scalings
        for depth in depths
        for seed in seeds
    ]
    return pd.DataFrame(rows)


EXPLODES = {"one": lambda n: 0.23 * n, "inv_sqrt": lambda n: 0.4, "inv": lambda n: 0.0}


@pytest.mark.parametrize(
    "norms, verdict",
    [
        (norms_table(EXPLODES), HOLDS),
        (norms_table({**EXPLODES, "one": lambda n: 0.001 * n}), DOES_NOT_HOLD),
        (norms_table({**EXPLODES, "inv_sqrt": lambda n: 0.002 * n}), DOES_NOT_HOLD),
        (norms_table(EXPLODES, depths=(1, 10)), NOT_MEASURED),
        (norms_table(EXPLODES, scalings={"one", "inv_sqrt"}), NOT_MEASURED),
        (None, NOT_MEASURED),
    ],
)
def test_c2_verdict_follows_the_norms(norms, verdict):
    check = claims.check_c2(norms, THRESHOLDS["C2"])
    assert check.verdict == verdict
    if verdict == HOLDS:
        assert check.measured["largest_depth"] == 1000
        assert check.measured["one_log10_growth_per_module"] == pytest.approx(0.23)


def test_c2_reads_fixed_lambda_scalings_as_text_and_ignores_them():
    norms = pd.concat([norms_table(EXPLODES), norms_table({"0.5": lambda n: 0.1 * n})])
    assert claims.check_c2(norms, THRESHOLDS["C2"]).verdict == HOLDS


def test_c2_growth_at_exactly_the_threshold_holds():
    measured = claims.check_c2(norms_table(EXPLODES), THRESHOLDS["C2"]).measured
    at_threshold = {**THRESHOLDS["C2"], "min_log10_growth_per_module": 0}
    at_threshold["min_log10_growth_per_module"] = measured["one_log10_growth_per_module"]
    assert claims.check_c2(norms_table(EXPLODES), at_threshold).verdict == HOLDS


def test_c2_norm_at_exactly_the_bound_is_not_bounded():
    # one seed, log10 ‖x_n‖/‖x_0‖ = 1 exactly: ‖x_n‖/‖x_0‖ = 10 = max_bounded_rel_norm
    norms = norms_table({**EXPLODES, "inv": lambda n: 1.0}, seeds=(0,))
    assert THRESHOLDS["C2"]["max_bounded_rel_norm"] == 10
    assert claims.check_c2(norms, THRESHOLDS["C2"]).verdict == DOES_NOT_HOLD


# --- C3: accuracy table ----------------------------------------------------------------


def run_rows(scaling, depth, accs, lr=0.05):
    """One runs.csv row per seed; an accuracy of None is a diverged run."""
    return [
        {
            "run_id": f"{scaling}-n{depth}-lr{lr}-s{seed}",
            "dataset": "digits",
            "arch": "mlp",
            "width": 64,
            "lr": lr,
            "epochs": 15,
            "batch_size": 128,
            "scaling": scaling,
            "depth": depth,
            "seed": seed,
            "status": "diverged" if acc is None else "ok",
            "test_acc": acc,
        }
        for seed, acc in enumerate(accs)
    ]


#: A test set of 10,000 images: binomial errors of ~0.2 points per accuracy.
MANIFESTS = [{"dataset": "digits", "n_test": 10_000}]
DIVERGED = [None, None]
#: Gaps of 2 points on both seeds, far outside the binomial error.
CLEAR = {"inv_sqrt": [0.96, 0.962], "inv": [0.94, 0.942]}


def runs_table(one=DIVERGED, inv_sqrt=CLEAR["inv_sqrt"], inv=CLEAR["inv"], lr=0.05):
    """Runs at a shallow depth where everything trains with a clear gap, and at n=64 as
    given (BatchNorm at 0.97)."""
    shallow = run_rows("one", 4, [0.95, 0.95], lr)
    shallow += run_rows("inv_sqrt", 4, CLEAR["inv_sqrt"], lr) + run_rows("inv", 4, CLEAR["inv"], lr)
    deep = run_rows("one", 64, one, lr) + run_rows("inv_sqrt", 64, inv_sqrt, lr)
    deep += run_rows("inv", 64, inv, lr) + run_rows("bn", 64, [0.97, 0.97], lr)
    return pd.DataFrame(shallow + deep)


@pytest.mark.parametrize(
    "table, verdict",
    [
        (runs_table(), HOLDS),
        (runs_table(one=[0.15, 0.15]), HOLDS),  # λ=1 stalled
        (runs_table(one=[0.2, 0.2]), DOES_NOT_HOLD),  # exactly at stalled_below: not stalled
        (runs_table(one=[0.9, 0.9]), DOES_NOT_HOLD),  # λ=1 trained
        (runs_table(inv_sqrt=[0.96, None]), DOES_NOT_HOLD),  # a 1/√n seed diverged
        (runs_table(inv=[0.3, 0.3]), DOES_NOT_HOLD),  # 1/n did not train
        (runs_table(inv=[0.5, 0.5]), HOLDS),  # exactly at trained_above: trained
        (runs_table(inv_sqrt=[0.92, 0.922]), DOES_NOT_HOLD),  # 1/n clearly above 1/√n
        (runs_table(inv_sqrt=[0.95, 0.93], inv=[0.94, 0.94]), INCONCLUSIVE),  # seed noise
        (runs_table(inv_sqrt=[1.0, 1.0], inv=[1.0, 1.0]), DOES_NOT_HOLD),  # an exact tie
        (runs_table(inv_sqrt=[0.96], inv=[0.94]), NOT_MEASURED),  # one seed: no seed noise
        (runs_table().query("scaling != 'one'"), NOT_MEASURED),
        (runs_table().assign(status="diverged", test_acc=None), NOT_MEASURED),
        (None, NOT_MEASURED),
    ],
)
def test_c3_verdict_follows_the_accuracies(table, verdict):
    check = claims.check_c3(table, MANIFESTS, None, THRESHOLDS["C3"])
    assert check.verdict == verdict
    if verdict in (HOLDS, DOES_NOT_HOLD, INCONCLUSIVE):
        (group,) = check.measured["groups"]
        assert group["largest_depth"] == 64 and [d["depth"] for d in group["depths"]] == [4, 64]
        assert group["depths"][1]["runs"]["bn"]["test_acc"] == pytest.approx(0.97)


def test_c3_gap_interval_is_paired_over_seeds():
    check = claims.check_c3(
        runs_table(inv_sqrt=[0.95, 0.93], inv=[0.94, 0.94]), MANIFESTS, None, THRESHOLDS["C3"]
    )
    gap = check.measured["groups"][0]["depths"][1]["gap"]
    assert gap["mean"] == pytest.approx(0.0) and gap["n_seeds"] == 2
    # gaps +0.01, −0.01: sd √2·0.01, t(0.975, 1) = 12.706
    assert gap["seed_half_width"] == pytest.approx(12.7062 * 0.01, rel=1e-4)
    assert gap["high"] == pytest.approx(gap["seed_half_width"])
    assert "interval [-12.7, +12.7] (inconclusive)" in check.summary


def test_c3_gap_inside_the_test_set_noise_is_inconclusive():
    """The same 1-point gap on both seeds: no seed spread, but 100 test images resolve
    accuracies only to ~2 points."""
    table = runs_table(inv_sqrt=[0.96, 0.96], inv=[0.95, 0.95])
    assert claims.check_c3(table, MANIFESTS, None, THRESHOLDS["C3"]).verdict == HOLDS
    small = [{"dataset": "digits", "n_test": 100}]
    check = claims.check_c3(table, small, None, THRESHOLDS["C3"])
    assert check.verdict == INCONCLUSIVE
    gap = check.measured["groups"][0]["depths"][1]["gap"]
    binomial = (2 * (0.96 * 0.04 + 0.95 * 0.05) / 100) ** 0.5 / 2
    assert gap["measurement_half_width"] == pytest.approx(1.959964 * binomial)


def outcomes(both_right, only_a, only_b, both_wrong):
    """Two classifiers' per-example outcomes on one test set, in the given counts."""
    a = [True] * both_right + [True] * only_a + [False] * only_b + [False] * both_wrong
    b = [True] * both_right + [False] * only_a + [True] * only_b + [False] * both_wrong
    return np.array(a), np.array(b)


def test_c3_test_set_error_comes_from_the_paired_outcomes():
    """100 test images; per seed, 1/√n gets 3 images right that 1/n misses and 1/n gets 1
    that 1/√n misses: a gap of 2 points whose test-set variance is (0.03 + 0.01 − 0.02²)
    / 100, not the independent binomials' 2 · 0.95 · 0.05 / 100."""
    table = runs_table(inv_sqrt=[0.96, 0.96], inv=[0.94, 0.94])
    deep = table[table["depth"] == 64]
    correct = {}
    for _, row in deep[deep["scaling"].isin(["inv_sqrt", "inv"])].iterrows():
        a, b = outcomes(93, 3, 1, 3)
        correct[row["run_id"]] = a if row["scaling"] == "inv_sqrt" else b
    for _, row in table[table["depth"] == 4].iterrows():
        correct[row["run_id"]] = np.ones(100, bool)
    small = [{"dataset": "digits", "n_test": 100}]
    check = claims.check_c3(table, small, correct, THRESHOLDS["C3"])
    depth = check.measured["groups"][0]["depths"][1]
    assert depth["test_set_error"] == "paired per-example outcomes"
    variance = (0.03 + 0.01 - 0.02**2) / 100
    assert depth["gap"]["measurement_half_width"] == pytest.approx(
        1.959963984540054 * (2 * variance) ** 0.5 / 2, rel=1e-12
    )
    independent = claims.check_c3(table, small, None, THRESHOLDS["C3"])
    unpaired = independent.measured["groups"][0]["depths"][1]
    assert unpaired["test_set_error"].startswith("independent binomials")
    assert unpaired["gap"]["measurement_half_width"] > depth["gap"]["measurement_half_width"]


def test_c3_inconclusive_gap_states_its_power():
    check = claims.check_c3(
        runs_table(inv_sqrt=[0.95, 0.93], inv=[0.94, 0.94]), MANIFESTS, None, THRESHOLDS["C3"]
    )
    power = check.measured["groups"][0]["depths"][1]["gap_power"]
    assert power["n_seeds"] == 2 and power["seed_sd"] == pytest.approx(0.02**0.5 / 10)
    assert power["smallest_decided"] > 0.1  # 2 seeds: t(1) = 12.7 times the spread
    assert power["seeds_for_reference"] > 2
    assert f"needs {power['seeds_for_reference']} seeds" in check.summary
    assert "decides a true difference of" in check.summary


def test_c3_is_judged_at_every_depth():
    table = runs_table()
    shallow_inv = (table["depth"] == 4) & (table["scaling"] == "inv")
    table.loc[shallow_inv, "test_acc"] = 0.99  # 1/n clearly ahead at n=4
    check = claims.check_c3(table, MANIFESTS, None, THRESHOLDS["C3"])
    assert check.verdict == DOES_NOT_HOLD
    assert [d["gap_verdict"] for d in check.measured["groups"][0]["depths"]] == [
        DOES_NOT_HOLD,
        HOLDS,
    ]


def test_c3_must_hold_for_every_learning_rate():
    good = runs_table(lr=0.05)
    bad = runs_table(one=[0.9, 0.9], lr=0.01)
    assert claims.check_c3(good, MANIFESTS, None, THRESHOLDS["C3"]).verdict == HOLDS
    check = claims.check_c3(pd.concat([good, bad]), MANIFESTS, None, THRESHOLDS["C3"])
    assert check.verdict == DOES_NOT_HOLD and len(check.measured["groups"]) == 2


def test_c3_without_a_test_set_size_is_an_error():
    with pytest.raises(ValueError, match="manifest.*digits"):
        claims.check_c3(runs_table(), [], None, THRESHOLDS["C3"])


@pytest.mark.parametrize(
    "interval, verdict",
    [
        ({"low": 1e-300, "high": 1.0}, HOLDS),
        ({"low": 0.0, "high": 1.0}, INCONCLUSIVE),  # touches 0: not above it
        ({"low": -1.0, "high": 1e-300}, INCONCLUSIVE),
        ({"low": -1.0, "high": 0.0}, DOES_NOT_HOLD),  # at or below 0: not above it
    ],
)
def test_interval_verdict_at_its_boundaries(interval, verdict):
    assert claims._interval_verdict(interval) == verdict


# --- C4: GC(λ) of the sweep ------------------------------------------------------------

SWEEP_LAMBDAS = [0.0312, 0.0442, 0.0625, 0.0884, 0.125, 0.177, 0.25]
SWEEP_SETTINGS = dict(dataset="digits", arch="mlp", depth=16, width=64, lr=0.02, epochs=15)


def sweep_rows(curves, stderr=0.0, grad_clip=None, lambdas=SWEEP_LAMBDAS, **settings):
    """gc_vs_lambda rows: ``curves[seed]`` is the final GC per λ (None: diverged)."""
    return [
        {
            "run_id": f"lam{lam:g}-s{seed}" + (f"-clip{grad_clip:g}" if grad_clip else ""),
            **SWEEP_SETTINGS,
            "batch_size": 128,
            **settings,
            "scaling": f"{lam:g}",
            "lambda": lam,
            "seed": seed,
            "grad_clip": grad_clip,
            "status": "diverged" if gc is None else "ok",
            "gc_final": gc,
            "gc_final_stderr": None if gc is None else stderr,
            "gc_peak": None if gc is None else 2 * gc,
            "flag_gc_peak_at_init": False,
            "flag_train_loss_above_chance": False,
        }
        for seed, curve in enumerate(curves)
        for lam, gc in zip(lambdas, curve, strict=True)
    ]


def sweep(curves, stderr=0.0, clipped=None):
    """A λ sweep (SWEEP_LAMBDAS), plus a BatchNorm run (no fixed λ: no point of the
    curve) and, if given, clipped runs at λ 0.5 and 1 (``clipped[seed]``, their GC)."""
    rows = sweep_rows(curves, stderr)
    rows.append({**rows[0], "run_id": "bn-s0", "scaling": "bn", "lambda": 1.0, "gc_final": 1e6})
    if clipped:
        rows += sweep_rows(clipped, grad_clip=1.0, lambdas=[0.5, 1.0])
    return pd.DataFrame(rows)


PEAKED = [[1, 2, 4, 9, 4, 2, 1.5], [1.1, 2.1, 4.2, 9.5, 4.1, 2.1, 1.4]]
NOISY_SEED = [1.3, 1.2, 1.05, 1.4, 1.1, 1.25, 1.0]


@pytest.mark.parametrize(
    "table, verdict",
    [
        (sweep(PEAKED), HOLDS),
        (sweep([[1, 2, 4, 8, 16, 32, 64], [1.1, 2, 4.1, 8, 17, 31, 66]]), DOES_NOT_HOLD),
        (sweep([[64, 32, 16, 8, 4, 2, 1], [66, 31, 17, 8, 4.1, 2, 1.1]]), DOES_NOT_HOLD),
        (sweep([[3] * 7] * 2), DOES_NOT_HOLD),  # flat: no interior point above the ends
        (sweep([[3, 3.1, 3, 2.9, 3, 3.05, 3], [3, 2.9, 3.05, 3.1, 3, 2.95, 3]]), INCONCLUSIVE),
        (sweep([[9, 4, 2, 1, 2, 4, 9], [9.5, 4.1, 2.1, 1.1, 2.2, 4, 9.1]]), DOES_NOT_HOLD),  # U
        (sweep([[1, 2, 3, 2, 3, 5, 9], [1.1, 2, 3.1, 2.1, 3, 5, 9.5]]), DOES_NOT_HOLD),  # edge
        (sweep([[1, 9, 2, 1, 2, 9, 1], [1.1, 9.5, 2.1, 1.1, 2.1, 9.4, 1.1]]), DOES_NOT_HOLD),
        (sweep([[1, 2, 4, 9, 4, 2, 1.5], NOISY_SEED]), INCONCLUSIVE),  # peak inside seed noise
        (sweep(PEAKED, stderr=20.0), INCONCLUSIVE),  # inside GC's own standard error
        (sweep([[*c[:4], None, None, None] for c in PEAKED]), NOT_MEASURED),  # 4 stable λ
        (sweep([[None] * 7] * 2), NOT_MEASURED),
        (sweep(PEAKED[:1]), NOT_MEASURED),  # one seed: no seed noise
        (None, NOT_MEASURED),
    ],
)
def test_c4_verdict_follows_the_curve_and_its_noise(table, verdict):
    assert claims.check_c4(table, THRESHOLDS["C4"]).verdict == verdict


def test_c4_bimodal_is_never_one_peak_even_inside_the_noise():
    """Two peaks whose dip is inside the noise of 2 seeds: ends far below both, but the
    seed-mean curve has two local maxima, so it is not "holds"."""
    bimodal = [[1, 9, 5, 2, 5, 10, 1], [1.2, 9.6, 3, 2.5, 7, 9.5, 1.1]]
    check = claims.check_c4(sweep(bimodal), THRESHOLDS["C4"])
    assert check.measured["test"]["minus_smallest"]["low"] > 0  # the ends are clear
    assert check.verdict == INCONCLUSIVE
    assert check.measured["test"]["seed_mean_local_maxima"] == 2


def test_c4_several_peaks_beyond_the_noise_names_the_second_peak():
    bimodal = [[1, 9, 2, 1, 2, 9, 1], [1.1, 9.5, 2.1, 1.1, 2.1, 9.4, 1.1]]
    check = claims.check_c4(sweep(bimodal), THRESHOLDS["C4"])
    second = check.measured["test"]["second_peak"]
    assert check.measured["test"]["shape"] == "several peaks"
    # the higher peak is at λ = 0.0442; GC rises again after it, up to λ = 0.177
    assert second["above_lambda"] == 0.177 and second["below_lambda"] < 0.177


def test_c4_is_decided_below_the_stability_limit_with_the_top_diverged():
    """λ = 0.25 diverges for one seed: the limit is 0.25, the 6 λ below still decide."""
    curves = [[1, 2, 4, 9, 4, 2, 1e9], [1.1, 2.1, 4.2, 9.5, 4.1, 2.1, None]]
    check = claims.check_c4(sweep(curves), THRESHOLDS["C4"])
    assert check.verdict == HOLDS
    assert check.measured["stability_limit_lambda"] == 0.25
    assert check.measured["test"]["lambdas"] == SWEEP_LAMBDAS[:-1]
    assert "lam0.25-s0" not in check.measured["deciding_runs"]  # trained, but at the limit
    assert len(check.measured["deciding_runs"]) == 12
    assert "stability limit λ = 0.25" in check.summary
    assert "decided by the 12 unclipped runs at λ = 0.0312, " in check.summary


def test_c4_too_short_a_stable_range_is_not_measured_with_the_reason():
    curves = [[1, 2, 4, 9, None, None, None]] * 2
    check = claims.check_c4(sweep(curves), THRESHOLDS["C4"])
    assert check.verdict == NOT_MEASURED
    assert "4 λ in the stable range, 5 needed" in check.summary
    assert "stability limit λ = 0.125" in check.summary


def test_c4_clipped_runs_are_reported_and_never_decide():
    clipped = [[1e5, 1e9], [2e5, 2e9]]  # far above every stable λ
    with_clipped = claims.check_c4(sweep(PEAKED, clipped=clipped), THRESHOLDS["C4"])
    alone = claims.check_c4(sweep(PEAKED), THRESHOLDS["C4"])
    assert with_clipped.verdict == alone.verdict == HOLDS
    assert with_clipped.measured["test"] == alone.measured["test"]
    assert "clipped runs (gradient norm clipped, past the limit; shown, never deciding)" in (
        with_clipped.summary
    )
    assert "λ = 1: 9.15" in with_clipped.summary  # (log10 1e9 + log10 2e9) / 2
    assert len(with_clipped.measured["clipped_runs_not_deciding"]) == 4


def test_c4_a_clipped_run_inside_the_stable_range_never_decides():
    table = sweep(PEAKED)
    copy = pd.DataFrame(sweep_rows([[1e9] * 7] * 2, grad_clip=1.0))
    check = claims.check_c4(pd.concat([table, copy]), THRESHOLDS["C4"])
    assert check.verdict == HOLDS and len(check.measured["deciding_runs"]) == 14


def test_c4_uses_the_seeds_present_at_every_stable_lambda():
    table = pd.DataFrame(sweep_rows([*PEAKED, [100] * 7]))
    table = table[~((table["seed"] == 2) & (table["lambda"] == 0.0625))]  # seed 2 lacks one λ
    check = claims.check_c4(table, THRESHOLDS["C4"])
    assert check.measured["test"]["seeds"] == [0, 1] and check.verdict == HOLDS


def test_c4_never_mixes_two_sweeps():
    """An MLP and a second sweep (another arch) of opposite shapes: each gets its own
    test; together they do not hold (one does not), and no statistic pools them."""
    mlp = sweep_rows(PEAKED)
    other = sweep_rows([[1, 2, 4, 8, 16, 32, 64]] * 2, arch="transformer")
    checks = claims.check_all({"capacity_sweep": pd.DataFrame(mlp + other)}, THRESHOLDS)
    (c4,) = [c for c in checks if c.id == "C4"]
    families = {f["arch"]: f for f in c4.measured["families"]}
    assert families["mlp"]["verdict"] == HOLDS
    assert families["transformer"]["verdict"] == DOES_NOT_HOLD
    assert c4.verdict == DOES_NOT_HOLD
    assert (
        families["mlp"]["measured"]["test"]
        == claims.check_c4(pd.DataFrame(mlp), THRESHOLDS["C4"]).measured["test"]
    )


def test_c4_flags_runs_whose_gc_says_little():
    table = sweep(PEAKED)
    table.loc[table["lambda"] == 0.25, "flag_gc_peak_at_init"] = True
    table.loc[table["lambda"] == 0.177, "flag_train_loss_above_chance"] = True
    check = claims.check_c4(table, THRESHOLDS["C4"])
    assert "GC highest at initialisation at λ = 0.25" in check.summary
    assert "final train loss above ln(classes) at λ = 0.177" in check.summary


def test_c4_inconclusive_states_its_power():
    check = claims.check_c4(sweep([[1, 2, 4, 9, 4, 2, 1.5], NOISY_SEED]), THRESHOLDS["C4"])
    power = check.measured["test"]["power"]
    assert power["smallest_decided"] > 0 and power["seeds_for_reference"] > 2
    assert f"needs {power['seeds_for_reference']} seeds" in check.summary
    assert power["reference"] == THRESHOLDS["C4"]["reference_peak_log10"]


def test_c4_summary_gives_the_curve():
    check = claims.check_c4(sweep(PEAKED), THRESHOLDS["C4"])
    assert "0.0884: 0.97" in check.summary  # (log10 9 + log10 9.5) / 2
    assert "highest interior λ = 0.0884" in check.summary


def test_c4_reads_its_metric():
    peak = {**THRESHOLDS["C4"], "metric": "gc_peak"}
    check = claims.check_c4(sweep(PEAKED), peak)
    assert check.verdict == HOLDS and check.measured["test"]["metric"] == "gc_peak"


# --- C5: expansion tables --------------------------------------------------------------


def expansion_tables(stages=("init", "trained"), depth=16):
    orders, truncated = [], []
    for scaling in ("inv_sqrt", "inv"):
        for seed in (0, 1):
            run = {"run_id": f"{scaling}-s{seed}", "depth": depth, "scaling": scaling, "seed": seed}
            for stage in stages:
                for order in range(5):
                    for decomposition in ("path", "taylor"):
                        orders.append(
                            {
                                **run,
                                "stage": stage,
                                "decomposition": decomposition,
                                "order": order,
                                "rel_norm": 0.5**order,
                            }
                        )
            for order in range(5):
                truncated.append(
                    {
                        **run,
                        "order": order,
                        "test_acc": 0.9 - 0.1 / (order + 1),
                        "full_test_acc": 0.9,
                    }
                )
    return pd.DataFrame(orders), pd.DataFrame(truncated)


def test_c5_is_measured_with_trained_orders_and_truncated_accuracy():
    orders, truncated = expansion_tables()
    check = claims.check_c5(orders, truncated, THRESHOLDS["C5"])
    assert check.verdict == MEASURED
    # rows in table order: λ=1/√n before λ=1/n, init before trained
    assert [(r["scaling"], r["stage"]) for r in check.measured["rows"]] == [
        ("inv_sqrt", "init"),
        ("inv_sqrt", "trained"),
        ("inv", "init"),
        ("inv", "trained"),
    ]
    trained = [r for r in check.measured["rows"] if r["stage"] == "trained"]
    assert len(trained) == 2
    for row in trained:
        assert row["order_1"] == pytest.approx(0.5) and row["order_2"] == pytest.approx(0.25)
        assert row["largest_higher_order"] == pytest.approx(0.125)
        assert row["accuracy_ratio_K1"] == pytest.approx(0.85 / 0.9)
        assert row["accuracy_ratio_K2"] == pytest.approx((0.9 - 0.1 / 3) / 0.9)
    assert "accuracy_ratio_K1" not in next(
        r for r in check.measured["rows"] if r["stage"] == "init"
    )


@pytest.mark.parametrize(
    "tables",
    [
        expansion_tables(stages=("init",)),  # no trained network
        (expansion_tables()[0], None),
        (None, expansion_tables()[1]),
        (expansion_tables()[0], expansion_tables()[1].iloc[0:0]),
    ],
)
def test_c5_is_not_measured_without_its_tables(tables):
    assert claims.check_c5(*tables, THRESHOLDS["C5"]).verdict == NOT_MEASURED


# --- the documents ---------------------------------------------------------------------


def all_tables():
    orders, truncated = expansion_tables()
    return {
        **dict(
            zip(
                ("truncation_slopes", "truncation_per_input", "truncation"),
                c1_tables(),
                strict=True,
            )
        ),
        "init_norms": norms_table(EXPLODES),
        "runs": runs_table(),
        "data_manifests": MANIFESTS,
        "capacity_sweep": sweep(PEAKED),
        "orders": orders,
        "truncated_accuracy": truncated,
    }


def test_documents_carry_every_claim_and_verdict():
    checks = claims.check_all(all_tables(), THRESHOLDS)
    # the transformer claims (C1T, C2T, C6, C7) have no tables here
    assert [c.verdict for c in checks] == [HOLDS, HOLDS, HOLDS, HOLDS, MEASURED] + [
        NOT_MEASURED
    ] * 4
    document = json.loads(claims.claims_json(checks, THRESHOLDS))
    ids = ["C1", "C2", "C3", "C4", "C5", "C1T", "C2T", "C6", "C7"]
    assert [c["id"] for c in document["claims"]] == ids
    assert document["thresholds"] == THRESHOLDS
    markdown = claims.claims_markdown(checks)
    for check in checks:
        assert f"| {check.id} | {check.verdict} |" in markdown
        assert f"## {check.id}: {check.verdict}" in markdown
        assert check.test in markdown
    figure = b"\x89PNG fake bytes"
    page = claims.claims_html(checks, {"C2": figure})
    assert page.count('<td style="text-align:left;background:#d4edda">holds</td>') == 4
    # C2's figure embedded (the report shows the page as a data URL), the others linked
    assert page.count("data:image/png;base64,") == 1 and page.count("<a href=") == 4
    assert "acc(λ=1/√n) − acc(λ=1/n) paired by seed" in page and "Σ_{k≤K}" in page
    assert markdown.count("*What would change the verdict.*") == 9


def test_html_escapes_text():
    (check, *_) = claims.check_all({}, THRESHOLDS)
    check.summary = "a <b> & c"
    assert "a &lt;b&gt; &amp; c" in claims.claims_html([check], {})


def test_nothing_produced_means_nothing_measured():
    checks = claims.check_all({}, THRESHOLDS)
    assert {c.verdict for c in checks} == {NOT_MEASURED}
    json.loads(claims.claims_json(checks, THRESHOLDS))


def test_read_tables_keeps_scalings_as_text(tmp_path):
    path = tmp_path / "init_norms.csv"
    norms_table({"0.5": lambda n: 0.0, "1": lambda n: 0.1}).to_csv(path, index=False)
    manifest = tmp_path / "digits.json"
    manifest.write_text(json.dumps(MANIFESTS[0]))
    tables = claims.read_tables({"init_norms": path, "data_manifests": [manifest], "orders": None})
    assert set(tables["init_norms"]["scaling"]) == {"0.5", "1"}
    assert tables["data_manifests"] == MANIFESTS
    assert tables["orders"] is None


def test_a_run_where_nothing_trained_reads_not_measured_with_the_reasons():
    orders, truncated = expansion_tables(stages=("init",))
    tables = {
        **all_tables(),
        "runs": runs_table().assign(status="diverged", test_acc=None),
        "capacity_sweep": sweep([[None] * 7] * 2),
        "orders": orders,
        "truncated_accuracy": truncated.iloc[0:0],
    }
    checks = {c.id: c for c in claims.check_all(tables, THRESHOLDS)}
    for claim, reason in (
        ("C3", "no trained run (all 14 diverged)"),
        ("C4", "stability limit λ = 0.0312 (unclipped runs diverged at λ = 0.0312, "),
        ("C5", "no expansion tables"),
    ):
        assert checks[claim].verdict == NOT_MEASURED and reason in checks[claim].summary
    json.loads(claims.claims_json(list(checks.values()), THRESHOLDS))


# --- which rows a statistic uses -------------------------------------------------------


def test_c1_smooth_slope_is_the_mean_of_per_seed_slopes_not_one_seed():
    """Seed 0 at 3.5 alone leaves the tolerance of 3; the mean of 3.5 and 2.6 is 3.05."""
    smooth = slopes_table({1: 2.0, 2: 3.5, 3: 4.0}, seeds=(0,))
    smooth = pd.concat([smooth, slopes_table({1: 2.0, 2: 2.6, 3: 4.0}, seeds=(1,))])
    slopes = pd.concat([smooth, slopes_table(RELU_BATCH, activation="relu")])
    check = claims.check_c1(slopes, *c1_tables()[1:], THRESHOLDS["C1"])
    assert check.measured["smooth_control"]["slopes"]["tanh"]["2"] == pytest.approx(3.05)
    assert check.verdict == HOLDS


def test_c1_ignores_path_slopes_in_the_smooth_control_and_the_batch_headline():
    slopes, per_input, truncation = c1_tables()
    paths = slopes_table({1: 9.0, 2: 9.0, 3: 9.0}, decomposition="path")  # off by far
    check = claims.check_c1(pd.concat([slopes, paths]), per_input, truncation, THRESHOLDS["C1"])
    assert check.verdict == HOLDS
    assert check.measured["relu_batch"]["batch_slopes"] == {"1": 2.0, "2": 2.5, "3": 2.5}


def test_c2_growth_is_fitted_on_seed_means_at_the_common_depths_only():
    """A depth only λ=1 has (n=3000, with an off-line norm) is not in the fit; the
    largest depth is the largest common one, whatever the row order."""
    norms = norms_table(EXPLODES)
    extra = pd.DataFrame([{"scaling": "one", "depth": 3000, "seed": 0, "log10_rel_norm": 0.0}])
    shuffled = pd.concat([extra, norms]).sample(frac=1, random_state=0)
    check = claims.check_c2(shuffled, THRESHOLDS["C2"])
    assert check.measured["depths"] == [1, 10, 100, 1000]
    assert check.measured["largest_depth"] == 1000
    # seeds 0 and 1 differ by 0.01 at every depth: the mean's slope is 0.23 exactly
    assert check.measured["one_log10_growth_per_module"] == pytest.approx(0.23, abs=1e-12)


def test_c2_bounded_uses_the_worst_seed_not_the_mean():
    """At the largest depth one seed of λ=1/n reaches 10^1.2 > 10, the mean stays below."""
    norms = norms_table(EXPLODES)
    worst = (norms["scaling"] == "inv") & (norms["depth"] == 1000) & (norms["seed"] == 1)
    norms.loc[worst, "log10_rel_norm"] = 1.2
    check = claims.check_c2(norms, THRESHOLDS["C2"])
    assert check.verdict == DOES_NOT_HOLD
    assert check.measured["max_log10_rel_norm_at_largest_depth"]["inv"] == pytest.approx(1.2)


def test_c3_stability_must_hold_at_every_depth_not_only_the_largest():
    table = runs_table()
    shallow = (table["depth"] == 4) & (table["scaling"] == "inv") & (table["seed"] == 1)
    table.loc[shallow, ["status", "test_acc"]] = ["diverged", None]
    check = claims.check_c3(table, MANIFESTS, None, THRESHOLDS["C3"])
    assert check.verdict == DOES_NOT_HOLD
    assert check.measured["groups"][0]["stability"] == DOES_NOT_HOLD


def test_c3_lambda_one_is_judged_at_the_largest_common_depth():
    """λ=1 trains at n=4 (fine) and diverges at n=64, the largest depth all three share;
    an n=256 where only λ=1/n ran is not "the largest"."""
    table = pd.concat([runs_table(), pd.DataFrame(run_rows("inv", 256, [0.9, 0.9]))])
    check = claims.check_c3(table, MANIFESTS, None, THRESHOLDS["C3"])
    assert check.measured["groups"][0]["largest_depth"] == 64
    assert check.verdict == HOLDS


def test_c3_gap_pairs_by_seed_and_leaves_out_a_seed_without_both():
    """Seed 2 has λ=1/√n only: the gap is over seeds 0 and 1."""
    table = pd.concat([runs_table(), pd.DataFrame(run_rows("inv_sqrt", 64, [0.5, 0.5, 0.99]))])
    table = table.drop_duplicates(subset=["scaling", "depth", "seed"], keep="first")
    check = claims.check_c3(table, MANIFESTS, None, THRESHOLDS["C3"])
    gap = check.measured["groups"][0]["depths"][1]["gap"]
    assert gap["n_seeds"] == 2 and gap["mean"] == pytest.approx(0.02, abs=1e-12)


def test_c5_reports_path_norms_not_taylor_norms_at_the_largest_depth():
    orders, truncated = expansion_tables()
    orders.loc[orders["decomposition"] == "taylor", "rel_norm"] = 99.0  # must not show
    deeper_orders, deeper_truncated = expansion_tables(depth=64)
    deeper_orders["rel_norm"] *= 2
    check = claims.check_c5(
        pd.concat([orders, deeper_orders]),
        pd.concat([truncated, deeper_truncated]),
        THRESHOLDS["C5"],
    )
    assert all(r["order_1"] in (0.5, 1.0) for r in check.measured["rows"])
    assert "trained, n=64" in check.summary and "‖P_1‖ 1" in check.summary


def test_a_new_claim_is_one_record(monkeypatch):
    """What the docstring promises: a record with its check and tables, and its
    thresholds, is all a claim needs to be checked and written."""

    def check_c9(sweep, thresholds):
        verdict = HOLDS if sweep is not None and len(sweep) >= thresholds["rows"] else NOT_MEASURED
        return claims.Finding("at least `rows` rows", verdict, f"{len(sweep)} rows")

    record = claims.Claim("C9", "A statement.", "figures/c9.png", "More rows.", ("runs",), check_c9)
    monkeypatch.setattr(claims, "CLAIMS", (*claims.CLAIMS, record))
    tables = {"runs": runs_table(), "data_manifests": MANIFESTS}
    checks = claims.check_all(tables, {**THRESHOLDS, "C9": {"rows": 3}})
    assert (checks[-1].id, checks[-1].verdict) == ("C9", HOLDS)
    assert checks[-1].measured["family"] == {"dataset": "digits", "arch": "mlp"}
    markdown = claims.claims_markdown(checks)
    assert "## C9: holds" in markdown and "[figures/c9.png](figures/c9.png)" in markdown
    with pytest.raises(ValueError, match="config key claims: no thresholds for C9"):
        claims.check_all({}, THRESHOLDS)
