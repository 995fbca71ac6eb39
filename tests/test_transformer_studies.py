"""The transformer studies at initialisation (issue 20): C2 init norms, C6 radius, C1
truncation, on small towers in float64."""

import math

import pytest
import torch

from resdepth import data, explosion, truncation

OPTIONS = dict(heads=2, activation="gelu", init="fan_in", context=9)


@pytest.fixture(scope="module")
def recall():
    tensors = data.recall_tensors(4, 8, 6, 32, 8, split_seed=0)
    return data.Prepared(num_classes=6, vocab_size=14, **tensors)


def test_token_cosine_is_one_for_identical_tokens_and_scale_free():
    same = torch.randn(3, 1, 8, dtype=torch.float64).expand(3, 5, 8)
    assert explosion.token_cosine(same) == pytest.approx(1.0, abs=1e-14)
    x = torch.randn(3, 5, 8, dtype=torch.float64)
    assert explosion.token_cosine(1e200 * x) == pytest.approx(explosion.token_cosine(x), rel=1e-12)
    # two orthogonal tokens: cosine 0
    pair = torch.eye(2, 8, dtype=torch.float64)[None]
    assert explosion.token_cosine(pair) == pytest.approx(0.0, abs=1e-15)


def test_init_norm_rows_explode_without_norm_and_not_with_pre_ln(recall):
    study = dict(
        dataset="recall",
        width=8,
        depth=[1, 4, 16],
        norm=["pre_ln", "none"],
        scaling=["one", "inv"],
        seed=[0],
        batch_size=4,
    )
    ids = recall.x_train[:4]
    rows = explosion.transformer_init_norm_rows(study, ids, 6, recall.model_options(OPTIONS))
    assert len(rows) == 2 * 2 * 3
    by = {(r["norm"], r["scaling"], r["depth"]): r for r in rows}
    free = [by[("none", "one", d)]["log10_rel_norm"] for d in (1, 4, 16)]
    pre = [by[("pre_ln", "one", d)]["rel_norm"] for d in (1, 4, 16)]
    assert free[2] > free[1] + 1 > free[0] + 1  # exponential: a decade per 6 blocks
    assert 1 < pre[0] < pre[1] < pre[2] < 10  # a power of n
    assert by[("none", "inv", 16)]["lambda"] == 1 / 32 and by[("none", "inv", 16)]["modules"] == 32
    assert by[("none", "one", 16)]["token_cosine"] > 0.5 > by[("none", "inv", 16)]["token_cosine"]
    for row in rows:  # one seed, one depth: the same embedding whatever the norm and λ
        same_depth = by[("none", "one", row["depth"])]
        assert row["token_cosine_stem"] == same_depth["token_cosine_stem"]


def test_radius_estimates_of_a_geometric_series_are_exact():
    """Σ (λ/ρ)^k: both tests give ρ at every order."""
    rho = 0.37
    norms = [rho**-k for k in range(9)]
    for order in (2, 5, 8):
        estimates = truncation.radius_estimates(norms, order)
        assert estimates["rho_ratio"] == pytest.approx(rho, rel=1e-13)
        assert estimates["rho_root"] == pytest.approx(rho, rel=1e-13)
    with pytest.raises(ValueError, match="order"):
        truncation.radius_estimates(norms, 1)
    assert truncation.radius_estimates([1.0, 1.0, 0.0], 2)["rho_ratio"] == math.inf
