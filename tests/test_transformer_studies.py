"""The transformer studies at initialisation (issue 20): C2 init norms, C6 radius, C1
truncation, on small towers in float64."""

import json
import math

import pytest
import torch
import yaml
from conftest import default_config

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


@pytest.fixture(scope="module")
def default_recall():
    """The default config's recall data set and transformer options."""
    config = default_config()
    sizes = {k: v for k, v in config["datasets"]["recall"].items() if k != "split_seed"}
    tensors = data.recall_tensors(**sizes, split_seed=config["datasets"]["recall"]["split_seed"])
    vocab = sizes["keys"] + sizes["values"]
    prepared = data.Prepared(num_classes=sizes["values"], vocab_size=vocab, **tensors)
    return config, prepared, prepared.model_options(config["arch_options"]["transformer"])


def test_default_truncation_slopes_are_k_plus_1(default_recall):
    """Claim C1 on the default's transformer rows: every order K <= 5, both norms, every
    seed, slope within ±0.1 of K+1 (the issue's acceptance)."""
    config, recall, options = default_recall
    study = config["transformer"]["truncation"]
    assert max(study["orders"]) == 5 and set(study["norm"]) == {"pre_ln", "none"}
    rows = truncation.transformer_truncation_rows(
        study, recall.x_train[: study["batch_size"]], recall.num_classes, options
    )
    slopes = truncation.transformer_truncation_slopes(rows, study["fit_max_lambda"])
    assert len(slopes) == 2 * len(study["seeds"]) * len(study["orders"])
    for row in slopes:
        assert row["n_points"] >= 4, row
        assert abs(row["slope"] - (row["order"] + 1)) <= 0.1, row


def test_truncation_converges_inside_the_radius_and_diverges_outside(default_recall):
    """What the radius means: at λ = ρ̂/2 the truncation error falls with K, at λ = 2ρ̂ it
    grows (one 4-block tower of each norm, ratio test at order 8)."""
    config, recall, options = default_recall
    ids = recall.x_train[:4]
    for norm in ("pre_ln", "none"):
        study = dict(dataset="recall", width=16, depth=[4], norm=[norm], seed=[0], order=8)
        (row,) = truncation.radius_rows({**study, "batch_size": 4}, ids, 16, options)
        rho = row["rho_ratio"]
        errors = {}
        for factor in (0.5, 2.0):
            low, high = factor * rho, factor * rho * 1.0001
            sweep = dict(study, depth=4, seeds=[0], orders=[2, 4, 6, 7], lambda_steps=2)
            sweep.update(lambda_min=low, lambda_max=high, fit_max_lambda=high)
            rows = truncation.transformer_truncation_rows(sweep, ids, 16, options)
            errors[factor] = [r["rel_error"] for r in rows if r["lambda"] == sweep["lambda_min"]]
        inside, outside = errors[0.5], errors[2.0]
        assert inside[-1] < inside[0] / 10, (norm, rho, inside)
        assert outside[-1] > outside[0], (norm, rho, outside)


@pytest.mark.workflow
def test_tiny_run_writes_the_transformer_studies_as_their_contracts_say(finished):
    """The shared tiny run's transformer tables: the columns of docs/file-contracts.md, one
    row per study cell, finite values, and claim checks that read them."""
    import pandas as pd

    config = yaml.safe_load(finished.path(".test/config/config.yaml").read_text())
    studies = config["transformer"]
    norms = pd.read_csv(finished.path("results/init_norms_transformer.csv"))
    assert tuple(norms.columns) == explosion.TRANSFORMER_COLUMNS
    init = studies["init_norms"]
    assert len(norms) == len(init["norm"]) * len(init["scaling"]) * len(init["depth"]) * len(
        init["seed"]
    )
    assert (norms["modules"] == 2 * norms["depth"]).all() and norms["rel_norm"].gt(0).all()
    radius = pd.read_csv(finished.path("results/radius_transformer.csv"))
    assert tuple(radius.columns) == truncation.RADIUS_COLUMNS
    assert radius["rho_ratio"].gt(0).all() and (radius["order"] == studies["radius"]["order"]).all()
    slopes = pd.read_csv(finished.path("results/expansion/truncation_transformer_slopes.csv"))
    assert tuple(slopes.columns) == truncation.TRANSFORMER_SLOPE_COLUMNS
    # the claims rule checked them, each transformer claim on its own family
    checks = {
        c["id"]: c for c in json.loads(finished.path("results/claims.json").read_text())["claims"]
    }
    assert checks["C1T"]["verdict"] == "holds", checks["C1T"]["summary"]
    assert checks["C1T"]["measured"]["family"] == {"dataset": "recall", "arch": "transformer"}
    for claim in ("C2T", "C6"):
        assert checks[claim]["verdict"] in ("holds", "does not hold", "inconclusive")
    assert checks["C7"]["verdict"] == "not measured"  # no transformer is trained here
    for figure in ("init_norms", "truncation", "radius"):
        assert finished.path(f"results/figures/transformer_{figure}.png").stat().st_size > 0


@pytest.mark.parametrize("scaling", ["bn", "inv"])
def test_expansion_run_tables_of_a_transformer_run(recall, scaling):
    """expansion_run on a transformer: token inputs, every order's terms reconstructing
    the stream, the radius (in λ) on the highest order's rows only, the composition part
    of each order, and the Taylor truncation's accuracy next to the paths'."""
    from resdepth import expansion, expansion_study, models

    cell = dict(dataset="recall", arch="transformer", depth=2, scaling=scaling, seed=0, width=8)
    torch.manual_seed(0)
    model = models.build_model(
        "transformer", (9,), 6, 8, 2, scaling, **recall.model_options(OPTIONS)
    )
    settings = dict(max_order=6, batch_size=16, eval_batch_size=16, lesion_max_modules=4)
    tables = expansion_study.run_tables(
        "r", cell, "ok", model.state_dict(), recall, settings, OPTIONS
    )
    orders = tables["orders"]
    assert max(r["reconstruction_error"] for r in orders) < 1e-14
    top = [r for r in orders if r["order"] == 4]  # 4 modules: orders 0..4
    assert top and all(r["rho_ratio"] > 0 and r["rho_root"] > 0 for r in top)
    assert all(math.isnan(r["rho_ratio"]) for r in orders if r["order"] < 4)
    # the composition part: what the Taylor term has beyond the frozen paths
    x0 = model.double().eval().stem(recall.x_test[:16])
    expected = expansion.composition_terms(model, x0, 4, freeze="secant")
    trained = [r for r in orders if r["stage"] == "trained" and r["decomposition"] == "path"]
    residual = (model.tower(x0) - x0).norm()
    for row in trained:
        norm = (expected[row["order"]].norm() / residual).item()
        assert row["composition_rel_norm"] == pytest.approx(norm, rel=1e-10, abs=1e-15)
    accuracy = tables["truncated_accuracy"]
    assert [r["order"] for r in accuracy] == [0, 1, 2, 3, 4]
    assert all(0 <= r["taylor_test_acc"] <= 1 for r in accuracy)
    assert accuracy[-1]["test_acc"] == accuracy[-1]["full_test_acc"]  # all paths: the network


def test_trained_transformer_figures_draw_the_run_tables(recall):
    """The figures of trained transformers, drawn from expansion_run's own tables: one
    panel per depth, a Taylor and a path curve per scaling (bn named pre-LN)."""
    import pandas as pd

    from resdepth import expansion_study, models, transformer_plots

    frames = {"orders": [], "truncated_accuracy": []}
    for depth in (1, 2):
        for scaling in ("bn", "inv"):
            cell = dict(dataset="recall", arch="transformer", depth=depth, scaling=scaling)
            cell.update(seed=0, width=8)
            torch.manual_seed(0)
            model = models.build_model(
                "transformer", (9,), 6, 8, depth, scaling, **recall.model_options(OPTIONS)
            )
            settings = dict(max_order=4, batch_size=8, eval_batch_size=16, lesion_max_modules=2)
            tables = expansion_study.run_tables(
                f"r{depth}{scaling}", cell, "ok", model.state_dict(), recall, settings, OPTIONS
            )
            for name in frames:
                frames[name] += tables[name]
    accuracy = pd.DataFrame(frames["truncated_accuracy"])
    figure = transformer_plots.truncated_accuracy_transformer_figure(accuracy)
    axes = [ax for ax in figure.axes if ax.get_title()]
    assert [ax.get_title() for ax in axes] == ["1 blocks (2 modules)", "2 blocks (4 modules)"]
    assert all(len(ax.get_lines()) == 2 * 3 for ax in axes)  # per scaling: Taylor, paths, full
    labels = [t.get_text() for t in figure.legends[0].get_texts()]
    assert "pre-LN, λ=1" in labels and "frozen paths" in labels
    figure = transformer_plots.orders_transformer_figure(pd.DataFrame(frames["orders"]))
    legend = [t.get_text() for t in figure.axes[1].get_legend().get_texts()]
    assert any(label.startswith("pre-LN, λ=1: ρ̂/λ̄") for label in legend)
