"""Each claim's verdict follows the data: small synthetic result tables flip it between
holds, does not hold and not measured (C5: measured and not measured)."""

import json

import pandas as pd
import pytest
from conftest import default_config

from resdepth import claims
from resdepth.claims import DOES_NOT_HOLD, HOLDS, MEASURED, NOT_MEASURED

THRESHOLDS = default_config()["claims"]


# --- C1: truncation slopes -------------------------------------------------------------


def slopes_table(slope_by_order, decomposition="taylor", seeds=(0, 1)):
    rows = []
    for seed in seeds:
        for order, slope in slope_by_order.items():
            for statistic in ("batch", "median_sample"):
                rows.append(
                    {
                        "dataset": "digits",
                        "arch": "mlp",
                        "width": 64,
                        "depth": 16,
                        "seed": seed,
                        "decomposition": decomposition,
                        "order": order,
                        "statistic": statistic,
                        "slope": slope,
                        "fit_lambda_min": 1e-4,
                        "fit_lambda_max": 1e-2,
                        "n_points": 9,
                    }
                )
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    "slopes, verdict",
    [
        (slopes_table({1: 2.02, 2: 2.95, 3: 4.1}), HOLDS),
        # order 2 stuck at slope 2: the λ² remainder is not removed
        (slopes_table({1: 2.0, 2: 2.0, 3: 2.0}), DOES_NOT_HOLD),
        (slopes_table({1: 2.0, 2: 3.5, 3: 4.0}), DOES_NOT_HOLD),
        (slopes_table({1: 2.0, 2: 3.0}), NOT_MEASURED),  # order 3 not computed
        (slopes_table({1: 2.0, 2: 3.0, 3: 4.0}, decomposition="path"), NOT_MEASURED),
        (slopes_table({1: 2.0, 2: float("nan"), 3: 4.0}), NOT_MEASURED),
        (None, NOT_MEASURED),
    ],
)
def test_c1_verdict_follows_the_slopes(slopes, verdict):
    check = claims.check_c1(slopes, THRESHOLDS["C1"])
    assert check.verdict == verdict
    if verdict != NOT_MEASURED:
        assert set(check.measured["slopes"]) == {"1", "2", "3"}


def test_c1_reports_the_other_decomposition_without_testing_it():
    slopes = pd.concat(
        [slopes_table({1: 2.0, 2: 3.0, 3: 4.0}), slopes_table({1: 2.0, 2: 2.0}, "path")]
    )
    check = claims.check_c1(slopes, THRESHOLDS["C1"])
    assert check.verdict == HOLDS
    assert check.measured["other_decompositions"] == {"path": {"1": 2.0, "2": 2.0}}
    assert "(path decomposition: 2.00, 2.00)" in check.summary


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


# --- C3: accuracy table ----------------------------------------------------------------


def cell(scaling, depth, acc, n_diverged=0, n_seeds=2, lr=0.05):
    n_ok = n_seeds - n_diverged
    return {
        "dataset": "digits",
        "arch": "mlp",
        "width": 64,
        "lr": lr,
        "epochs": 15,
        "batch_size": 128,
        "scaling": scaling,
        "depth": depth,
        "n_seeds": n_seeds,
        "n_ok": n_ok,
        "n_diverged": n_diverged,
        "test_acc_mean": acc if n_ok else float("nan"),
    }


def accuracy_table(one, inv_sqrt, inv, depth=64, **kwargs):
    """Cells at a shallow depth where all train, and at ``depth`` as given."""
    shallow = [cell(s, 4, 0.95, **kwargs) for s in ("one", "inv_sqrt", "inv", "bn")]
    deep = [
        cell("one", depth, *one, **kwargs),
        cell("inv_sqrt", depth, *inv_sqrt, **kwargs),
        cell("inv", depth, *inv, **kwargs),
        cell("bn", depth, 0.97, **kwargs),
    ]
    return pd.DataFrame(shallow + deep)


DIVERGED = (None, 2)


@pytest.mark.parametrize(
    "table, verdict",
    [
        (accuracy_table(DIVERGED, (0.96,), (0.94,)), HOLDS),
        (accuracy_table((0.15,), (0.96,), (0.94,)), HOLDS),  # λ=1 stalled
        (accuracy_table((0.9,), (0.96,), (0.94,)), DOES_NOT_HOLD),  # λ=1 trained
        (accuracy_table(DIVERGED, (0.96, 1), (0.94,)), DOES_NOT_HOLD),  # a 1/√n seed diverged
        (accuracy_table(DIVERGED, (0.93,), (0.94,)), DOES_NOT_HOLD),  # 1/n above 1/√n
        (accuracy_table(DIVERGED, (0.96,), (0.3,)), DOES_NOT_HOLD),  # 1/n did not train
        (accuracy_table(DIVERGED, (0.96,), (0.94,)).query("scaling != 'one'"), NOT_MEASURED),
        (None, NOT_MEASURED),
    ],
)
def test_c3_verdict_follows_the_accuracies(table, verdict):
    check = claims.check_c3(table, THRESHOLDS["C3"])
    assert check.verdict == verdict
    if verdict != NOT_MEASURED:
        (group,) = check.measured["groups"]
        assert group["largest_depth"] == 64 and group["bn_test_acc"] == pytest.approx(0.97)


def test_c3_uses_the_largest_depth_every_scaling_has():
    table = accuracy_table(DIVERGED, (0.96,), (0.94,))
    # λ=1/n was not trained at 256, so n=256 cannot be compared; n=64 is.
    extra = pd.DataFrame([cell("one", 256, 0.9), cell("inv_sqrt", 256, 0.9)])
    check = claims.check_c3(pd.concat([table, extra]), THRESHOLDS["C3"])
    assert check.measured["groups"][0]["largest_depth"] == 64 and check.verdict == HOLDS


def test_c3_must_hold_for_every_learning_rate():
    good = accuracy_table(DIVERGED, (0.96,), (0.94,), lr=0.05)
    bad = accuracy_table((0.9,), (0.96,), (0.94,), lr=0.01)
    assert claims.check_c3(good, THRESHOLDS["C3"]).verdict == HOLDS
    check = claims.check_c3(pd.concat([good, bad]), THRESHOLDS["C3"])
    assert check.verdict == DOES_NOT_HOLD and len(check.measured["groups"]) == 2


# --- C4: unimodality -------------------------------------------------------------------


def unimodality(shapes, metric="gc_final"):
    per_seed = [
        {"seed": seed, "shape": shape, "n_lambdas": 7, "argmax_lambda": 0.25}
        for seed, shape in enumerate(shapes)
    ]
    interior = [c for c in per_seed if c["shape"] == "interior maximum"]
    return {
        "depth": [16],
        "lambdas": [0.0625, 0.125, 0.25, 0.5, 1.0],
        metric: {
            "fraction_interior_maximum": len(interior) / len(per_seed) if per_seed else None,
            "median_argmax_lambda": 0.25 if interior else None,
            "per_seed": per_seed,
            "seed_mean": {"shape": "interior maximum", "argmax_lambda": 0.25},
        },
    }


@pytest.mark.parametrize(
    "result, verdict",
    [
        (unimodality(["interior maximum"] * 2 + ["maximum at largest lambda"]), HOLDS),
        (unimodality(["interior maximum"] + ["maximum at largest lambda"] * 2), DOES_NOT_HOLD),
        (unimodality(["several maxima"] * 3), DOES_NOT_HOLD),
        (unimodality([]), NOT_MEASURED),
        (unimodality(["interior maximum"] * 3, metric="gc_peak"), NOT_MEASURED),
        (None, NOT_MEASURED),
    ],
)
def test_c4_verdict_follows_the_unimodality_test(result, verdict):
    assert claims.check_c4(result, THRESHOLDS["C4"]).verdict == verdict


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
        "truncation_slopes": slopes_table({1: 2.0, 2: 3.0, 3: 4.0}),
        "init_norms": norms_table(EXPLODES),
        "accuracy": accuracy_table(DIVERGED, (0.96,), (0.94,)),
        "unimodality": unimodality(["interior maximum"] * 2 + ["several maxima"]),
        "orders": orders,
        "truncated_accuracy": truncated,
    }


def test_documents_carry_every_claim_and_verdict():
    checks = claims.check_all(all_tables(), THRESHOLDS)
    assert [c.verdict for c in checks] == [HOLDS, HOLDS, HOLDS, HOLDS, MEASURED]
    document = json.loads(claims.claims_json(checks, THRESHOLDS))
    assert [c["id"] for c in document["claims"]] == ["C1", "C2", "C3", "C4", "C5"]
    assert document["thresholds"] == THRESHOLDS
    markdown = claims.claims_markdown(checks)
    for check in checks:
        assert f"| {check.id} | {check.verdict} |" in markdown
        assert f"## {check.id}: {check.verdict}" in markdown
        assert check.test in markdown
    page = claims.claims_html(checks)
    assert page.count('<td style="background:#d4edda">holds</td>') == 4
    assert "acc(λ=1/√n) − acc(λ=1/n) ≥ 0" in page and "Σ_{k≤K}" in page


def test_html_escapes_text():
    check = claims.check_c1(None, THRESHOLDS["C1"])
    check.summary = "a <b> & c"
    assert "a &lt;b&gt; &amp; c" in claims.claims_html([check])


def test_nothing_produced_means_nothing_measured():
    checks = claims.check_all({}, THRESHOLDS)
    assert {c.verdict for c in checks} == {NOT_MEASURED}
    json.loads(claims.claims_json(checks, THRESHOLDS))


def test_read_tables_keeps_scalings_as_text(tmp_path):
    path = tmp_path / "init_norms.csv"
    norms_table({"0.5": lambda n: 0.0, "1": lambda n: 0.1}).to_csv(path, index=False)
    json_path = tmp_path / "unimodality.json"
    json_path.write_text(json.dumps(unimodality(["interior maximum"])))
    tables = claims.read_tables({"init_norms": path, "unimodality": json_path, "orders": None})
    assert set(tables["init_norms"]["scaling"]) == {"0.5", "1"}
    assert tables["unimodality"]["gc_final"]["fraction_interior_maximum"] == 1.0
    assert tables["orders"] is None
