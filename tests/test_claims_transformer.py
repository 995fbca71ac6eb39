"""Transformer claims (C1T, C2T, C6, C7) on tables with known answers."""

import math

import pandas as pd
import pytest
import yaml
from conftest import REPO

from resdepth import claims_transformer as ct

CLAIMS = yaml.safe_load((REPO / "config/config.yaml").read_text())["claims"]
MANIFESTS = [{"dataset": "recall", "n_test": 2048}]


def slopes(deviation=0.0, missing=False):
    rows = [
        {"norm": norm, "seed": seed, "order": k, "slope": k + 1 + (deviation if k == 3 else 0)}
        for norm in ("pre_ln", "none")
        for seed in (0, 1)
        for k in range(1, 6)
    ]
    if missing:
        rows[0]["slope"] = math.nan
    return pd.DataFrame(rows)


def test_truncation_holds_within_the_tolerance_and_fails_outside_it():
    assert ct.check_truncation(slopes(0.09), CLAIMS["C1T"])["verdict"] == ct.HOLDS
    assert ct.check_truncation(slopes(0.11), CLAIMS["C1T"])["verdict"] == ct.DOES_NOT_HOLD
    assert ct.check_truncation(slopes(missing=True), CLAIMS["C1T"])["verdict"] == ct.NOT_MEASURED
    assert ct.check_truncation(None, CLAIMS["C1T"])["verdict"] == ct.NOT_MEASURED


def init_norms(pre_ln_power=0.5, free_rate=0.1, bounded=1.2):
    rows = []
    for seed in (0, 1, 2):
        for modules in (2, 8, 32, 128, 512):
            jitter = 1 + 0.01 * seed
            values = {
                ("none", "one"): 10 ** (free_rate * jitter * modules),
                # a power of n from 8 modules on only (below, the check does not fit)
                ("pre_ln", "one"): 0.8 * jitter * max(modules, 6) ** pre_ln_power,
            }
            for norm in ("none", "pre_ln"):
                values[(norm, "inv_sqrt")] = values[(norm, "inv")] = bounded * jitter
            for (norm, scaling), rel in values.items():
                rows.append(
                    {
                        "norm": norm,
                        "scaling": scaling,
                        "seed": seed,
                        "modules": modules,
                        "rel_norm": rel,
                        "log10_rel_norm": math.log10(rel),
                    }
                )
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    "changes, verdict",
    [
        ({}, ct.HOLDS),
        ({"pre_ln_power": 1.0}, ct.DOES_NOT_HOLD),  # pre-LN grows like n, not √n
        ({"free_rate": 0.01}, ct.DOES_NOT_HOLD),  # norm-free λ=1 barely grows
        ({"bounded": 20.0}, ct.DOES_NOT_HOLD),  # 1/√n, 1/n not bounded
    ],
)
def test_init_norms_verdicts(changes, verdict):
    result = ct.check_init_norms(init_norms(**changes), CLAIMS["C2T"])
    assert result["verdict"] == verdict, result["summary"]


def test_init_norms_report_the_pre_ln_power_with_its_interval():
    measured = ct.check_init_norms(init_norms(), CLAIMS["C2T"])["measured"]["pre_ln_exponent"]
    assert measured["low"] < 0.5 < measured["high"] and measured["mean"] == pytest.approx(0.5)


def radius(power):
    rows = []
    for norm in ("pre_ln", "none"):
        for modules in (8, 32, 128):
            for seed in (0, 1, 2):
                rho = (0.8 + 0.02 * seed) / modules**power
                rows.append(
                    dict(
                        norm=norm,
                        modules=modules,
                        seed=seed,
                        order=8,
                        rho_ratio=rho,
                        rho_root=1.2 * rho,
                        rho_ratio_drift=-0.1,
                    )
                )
    return pd.DataFrame(rows)


def test_radius_holds_for_one_over_sqrt_n_not_for_one_over_n():
    result = ct.check_radius(radius(0.5), CLAIMS["C6"])
    assert result["verdict"] == ct.HOLDS, result["summary"]
    assert result["measured"]["rows"][0]["ratio_drift"] == pytest.approx(-0.1)
    assert ct.check_radius(radius(1.0), CLAIMS["C6"])["verdict"] == ct.DOES_NOT_HOLD


def truncated(order1_acc, full_acc=1.0, scaling="bn"):
    return pd.DataFrame(
        [
            dict(
                run_id="r",
                dataset="recall",
                arch="transformer",
                scaling=scaling,
                order=k,
                full_test_acc=full_acc,
                taylor_test_acc=acc,
            )
            for k, acc in ((0, 0.06), (1, order1_acc), (2, 0.5))
        ]
    )


def test_recall_order_verdicts():
    assert ct.check_recall_order(truncated(0.1), MANIFESTS, CLAIMS["C7"])["verdict"] == ct.HOLDS
    assert (
        ct.check_recall_order(truncated(0.9), MANIFESTS, CLAIMS["C7"])["verdict"]
        == ct.DOES_NOT_HOLD
    )
    # 0.3 ± its binomial error straddles the threshold
    assert (
        ct.check_recall_order(truncated(0.3), MANIFESTS, CLAIMS["C7"])["verdict"] == ct.INCONCLUSIVE
    )
    # the premise: a λ=1 run that learned recall
    not_trained = ct.check_recall_order(truncated(0.1, full_acc=0.5), MANIFESTS, CLAIMS["C7"])
    assert not_trained["verdict"] == ct.NOT_MEASURED
    other_scaling = ct.check_recall_order(truncated(0.9, scaling="inv"), MANIFESTS, CLAIMS["C7"])
    assert other_scaling["verdict"] == ct.NOT_MEASURED


def test_claims_check_runs_the_transformer_claims_per_family():
    """Wired into claims.CLAIMS: C7 on a truncated-accuracy table with an MLP and a
    transformer family decides on the transformer's rows alone; C1T, C2T, C6 read their
    own tables."""
    from resdepth import claims

    mlp = truncated(0.9).assign(dataset="digits", arch="mlp", taylor_test_acc=float("nan"))
    tables = {
        "truncated_accuracy": pd.concat([mlp, truncated(0.1)]),
        "data_manifests": MANIFESTS + [{"dataset": "digits", "n_test": 450}],
        "truncation_transformer_slopes": slopes().assign(dataset="recall", arch="transformer"),
        "init_norms_transformer": init_norms().assign(dataset="recall", arch="transformer"),
        "radius_transformer": radius(0.5).assign(dataset="recall", arch="transformer"),
    }
    checks = {c.id: c for c in claims.check_all(tables, CLAIMS)}
    assert checks["C7"].verdict == ct.HOLDS
    families = {f["arch"]: f["verdict"] for f in checks["C7"].measured["families"]}
    assert families == {"mlp": ct.NOT_MEASURED, "transformer": ct.HOLDS}
    assert [checks[c].verdict for c in ("C1T", "C2T", "C6")] == [ct.HOLDS] * 3
