"""Claim C1: the order-K truncation error of fresh towers vs a common λ, and its
log-log slopes (the rows behind results/expansion/truncation*.csv).

Towers are built in float64 and analysed in eval mode, with every branch at the same λ;
ReLU towers (the paper's) get the Taylor and the path decomposition, smooth towers
(tanh, GELU) the Taylor one, as the control where the expansion's assumptions hold at
every λ (``expansion``).
"""

import math

import numpy as np
import torch

from resdepth import expansion
from resdepth.fits import MIN_SLOPE_POINTS, loglog_slope
from resdepth.models import build_model

#: What names one tower of the truncation study, first in each of its tables.
TOWER_COLUMNS = ("dataset", "arch", "activation", "width", "depth", "seed")
TRUNCATION_COLUMNS = (
    *TOWER_COLUMNS,
    "lambda",
    "decomposition",
    "order",
    "rel_error",
    "mask_change_fraction",
)
SLOPE_COLUMNS = (
    *TOWER_COLUMNS,
    "decomposition",
    "order",
    "slope",
    "fit_lambda_min",
    "fit_lambda_max",
    "n_points",
)
PER_INPUT_COLUMNS = (
    *TOWER_COLUMNS,
    "input",
    "order",
    "first_flip_lambda_low",
    "first_flip_lambda_high",
    "slope",
    "fit_lambda_min",
    "fit_lambda_max",
    "n_points",
)
#: Relative errors below this many float64 epsilons of ‖x_n‖ / ‖x_0‖ are round-off, not
#: truncation: a per-input fit leaves them out.
ROUND_OFF_EPS = 1e2


def lambda_grid(settings):
    """The log-spaced λ values of the truncation study (config ``expansion.truncation``)."""
    if not settings["lambda_min"] < settings["fit_max_lambda"] <= settings["lambda_max"]:
        raise ValueError(
            "expansion.truncation needs lambda_min < fit_max_lambda <= lambda_max, got "
            f"{settings['lambda_min']}, {settings['fit_max_lambda']}, {settings['lambda_max']}"
        )
    return np.geomspace(
        settings["lambda_min"], settings["lambda_max"], settings["lambda_steps"]
    ).tolist()


@torch.no_grad()
def truncation_tables(settings, x, num_classes, arch_options=None):
    """Claim C1: the order-K truncation error of fresh towers vs a common λ.

    ``settings`` is the config's ``expansion.truncation`` section; ``x`` a batch of model
    inputs. One tower per seed and activation (``settings["activations"]``: ReLU, and
    smooth ones as the control where the expansion's assumptions hold); every branch
    gets the same λ (the scales are overridden). Returns ``{"truncation": rows,
    "per_input": rows}``.

    ``truncation``: per λ and order K, ``rel_error`` = ‖x_n − truncation‖ / ‖x_0‖ over
    the batch for ``taylor`` (the Taylor polynomial at λ = 0) and, for ReLU towers,
    ``path`` (the paths of length ≤ K at the real masks); ``mask_change_fraction``: how
    many ReLU units no longer have their λ = 0 mask (each adds an O(λ²) piece to the
    Taylor remainder that no Taylor order removes; empty for smooth towers).

    ``per_input`` (ReLU towers): per input and K, where its first mask flip lies on the
    grid, bracketed between two grid points (``first_flip_lambda_low``: the largest λ of
    the grid up to which none of its units is off its λ = 0 mask, 0 if the flip comes
    before the grid; ``first_flip_lambda_high``: the next λ of the grid, where one is;
    inf if none is on the grid), and the log-log slope of the input's Taylor error over
    the grid's λ up to ``first_flip_lambda_low`` and ``fit_max_lambda``, leaving out
    errors at round-off (ROUND_OFF_EPS). Below the flip the tower is exactly the
    polynomial the expansion computes, so that slope checks the expansion's exactness.
    """
    orders = sorted(settings["orders"])
    lambdas = lambda_grid(settings)
    rows, per_input = [], []
    for activation in settings["activations"]:
        for seed in settings["seeds"]:
            torch.manual_seed(seed)
            options = {**(arch_options or {}), "activation": activation}
            model = build_model(
                settings["arch"],
                tuple(x.shape[1:]),
                num_classes,
                settings["width"],
                settings["depth"],
                1.0,
                **options,
            )
            model = model.double().eval()
            key = {
                "dataset": settings["dataset"],
                "arch": settings["arch"],
                "activation": activation,
                "width": settings["width"],
                "depth": settings["depth"],
                "seed": seed,
            }
            relu = expansion.is_piecewise_linear(model)
            x0 = model.stem(x.double())
            x0_norms = x0.flatten(1).norm(dim=1)
            errors, floors = [], []
            # float64, as λ is: a float32 copy of λ would not compare equal to it
            first_change = torch.full((len(x0),), math.inf, dtype=torch.float64)
            for lam in lambdas:
                scales = torch.full((settings["depth"],), lam, dtype=torch.float64)
                decompositions = [("taylor", expansion.taylor_terms(model, x0, orders[-1], scales))]
                changed = math.nan
                if relu:
                    decompositions.append(
                        ("path", expansion.path_terms(model, x0, orders[-1], scales))
                    )
                    per_sample, _ = expansion.mask_changes_per_input(model, x0, scales)
                    changed = expansion.mask_change_fraction(model, x0, scales)
                    newly = (per_sample > 0) & torch.isinf(first_change)
                    first_change[newly] = lam
                for decomposition, result in decompositions:
                    partial_sums = result.terms.cumsum(0)
                    for order in orders:
                        error = result.output - partial_sums[order]
                        rows.append(
                            {
                                **key,
                                "lambda": lam,
                                "decomposition": decomposition,
                                "order": order,
                                "rel_error": (error.norm() / x0.norm()).item(),
                                "mask_change_fraction": changed,
                            }
                        )
                taylor = decompositions[0][1]
                per_sample_errors = (taylor.output[None] - taylor.terms.cumsum(0)[orders]).flatten(
                    2
                ).norm(dim=2) / x0_norms
                errors.append(per_sample_errors)
                floors.append(
                    ROUND_OFF_EPS
                    * torch.finfo(torch.float64).eps
                    * taylor.output.flatten(1).norm(dim=1)
                    / x0_norms
                )
            if relu:
                per_input += _per_input_slopes(
                    key,
                    lambdas,
                    orders,
                    torch.stack(errors),
                    torch.stack(floors),
                    first_change,
                    settings["fit_max_lambda"],
                )
    return {"truncation": rows, "per_input": per_input}


def _per_input_slopes(key, lambdas, orders, errors, floors, first_change, fit_max_lambda):
    """Rows of ``per_input``: ``errors`` (λ, K, input), ``floors`` (λ, input) the
    round-off level of each error, ``first_change`` (input) the first grid λ with a mask
    flip (inf: none on the grid)."""
    lambdas = np.asarray(lambdas)
    rows = []
    for i, first in enumerate(first_change.tolist()):
        before = lambdas[lambdas < first]
        low = float(before[-1]) if len(before) else 0.0
        for k, order in enumerate(orders):
            error = errors[:, k, i].numpy()
            keep = (lambdas <= low) & (lambdas <= fit_max_lambda) & (error > floors[:, i].numpy())
            fitted = lambdas[keep]
            rows.append(
                {
                    **key,
                    "input": i,
                    "order": order,
                    "first_flip_lambda_low": low,
                    "first_flip_lambda_high": first,
                    "slope": loglog_slope(fitted, error[keep], MIN_SLOPE_POINTS),
                    "fit_lambda_min": float(fitted.min()) if len(fitted) else math.nan,
                    "fit_lambda_max": float(fitted.max()) if len(fitted) else math.nan,
                    "n_points": int(keep.sum()),
                }
            )
    return rows


def truncation_slopes(rows, fit_max_lambda):
    """Fitted log-log slopes of the batch truncation error (``rel_error``) over
    λ ≤ ``fit_max_lambda``, per (activation, seed, decomposition, order)."""
    groups = {}
    for row in rows:
        if row["lambda"] <= fit_max_lambda:
            key = (row["activation"], row["seed"], row["decomposition"], row["order"])
            groups.setdefault(key, []).append(row)
    slopes = []
    for (activation, seed, decomposition, order), group in groups.items():
        lambdas = [r["lambda"] for r in group]
        slopes.append(
            {
                **{key: group[0][key] for key in ("dataset", "arch", "width", "depth")},
                "activation": activation,
                "seed": seed,
                "decomposition": decomposition,
                "order": order,
                "slope": loglog_slope(lambdas, [r["rel_error"] for r in group]),
                "fit_lambda_min": min(lambdas),
                "fit_lambda_max": max(lambdas),
                "n_points": len(group),
            }
        )
    return slopes


#: Issue 20: the truncation study of fresh transformers (results/expansion/
#: truncation_transformer*.csv). ``depth`` is blocks; ``modules`` = 2·depth.
TRANSFORMER_TOWER_COLUMNS = (
    "dataset",
    "arch",
    "activation",
    "norm",
    "width",
    "depth",
    "modules",
    "seed",
)
TRANSFORMER_TRUNCATION_COLUMNS = (
    *TRANSFORMER_TOWER_COLUMNS,
    "lambda",
    "order",
    "rel_error",
    "round_off",
)
TRANSFORMER_SLOPE_COLUMNS = (
    *TRANSFORMER_TOWER_COLUMNS,
    "order",
    "slope",
    "fit_lambda_min",
    "fit_lambda_max",
    "n_points",
)


def fresh_transformer(width, depth, norm, seed, length, num_classes, model_options):
    """A fresh float64 transformer of ``depth`` blocks for the studies at init, in eval
    mode, with the given ``norm`` and seed; scaling 1 (the studies set λ themselves)."""
    torch.manual_seed(seed)
    options = {**model_options, "norm": norm}
    model = build_model("transformer", (length,), num_classes, width, depth, 1.0, **options)
    return model.double().eval()


@torch.no_grad()
def transformer_truncation_rows(study, ids, num_classes, model_options):
    """Claim C1 on fresh transformers: ‖x_n(λ) − Σ_{k≤K} λ^k T_k‖ / ‖x_0‖ over the batch of
    token ids ``ids``, per norm, seed, λ (log-spaced, one λ shared by every module) and
    order K of ``study`` (the config's ``transformer.truncation``).

    The Taylor coefficients T_k of the smooth tower (softmax, LayerNorm, GELU/tanh) are
    computed once per tower at unit scales; each λ then costs one forward pass. Softmax
    attention, LayerNorm with ε > 0 and smooth activations make the tower analytic near
    λ = 0: below its radius of convergence the error is O(λ^{K+1}). ``round_off`` is the
    error float64 cannot resolve (ROUND_OFF_EPS epsilons of ‖x_n‖/‖x_0‖): the slope fit
    leaves such points out.
    """
    orders = sorted(study["orders"])
    modules = 2 * study["depth"]
    eps = torch.finfo(torch.float64).eps
    rows = []
    for norm in study["norm"]:
        for seed in study["seeds"]:
            model = fresh_transformer(
                study["width"], study["depth"], norm, seed, ids.shape[1], num_classes, model_options
            )
            key = {
                "dataset": study["dataset"],
                "arch": "transformer",
                "activation": model_options.get("activation"),
                "norm": norm,
                "width": study["width"],
                "depth": study["depth"],
                "modules": modules,
                "seed": seed,
            }
            x0 = model.stem(ids)
            unit = torch.ones(modules, dtype=torch.float64)
            coefficients = expansion.taylor_terms(model, x0, orders[-1], unit).terms
            x0_norm = x0.norm()
            for lam in lambda_grid(study):
                output = expansion.tower_forward(model, x0, lam * unit)
                powers = lam ** torch.arange(orders[-1] + 1, dtype=torch.float64)
                partial_sums = (powers.view(-1, *[1] * x0.dim()) * coefficients).cumsum(0)
                round_off = (ROUND_OFF_EPS * eps * output.norm() / x0_norm).item()
                for order in orders:
                    error = (output - partial_sums[order]).norm() / x0_norm
                    rows.append(
                        {
                            **key,
                            "lambda": lam,
                            "order": order,
                            "rel_error": error.item(),
                            "round_off": round_off,
                        }
                    )
    return rows


def transformer_truncation_slopes(rows, fit_max_lambda):
    """Log-log slope of ``rel_error`` vs λ per (norm, seed, order), over λ ≤
    ``fit_max_lambda`` and errors above ``round_off``; NaN with fewer than 3 such points."""
    groups = {}
    for row in rows:
        group = groups.setdefault((row["norm"], row["seed"], row["order"]), [row, []])
        if row["lambda"] <= fit_max_lambda and row["rel_error"] > row["round_off"]:
            group[1].append(row)
    slopes = []
    for first, fitted in groups.values():
        lambdas = [r["lambda"] for r in fitted]
        slope = loglog_slope(lambdas, [r["rel_error"] for r in fitted])
        slopes.append(
            {
                **{key: first[key] for key in TRANSFORMER_TOWER_COLUMNS},
                "order": first["order"],
                "slope": slope if len(fitted) >= 3 else math.nan,
                "fit_lambda_min": min(lambdas, default=math.nan),
                "fit_lambda_max": max(lambdas, default=math.nan),
                "n_points": len(fitted),
            }
        )
    return slopes


#: Claim C6 (results/radius_transformer.csv): per fresh tower, at the study's order K.
RADIUS_COLUMNS = (
    *TRANSFORMER_TOWER_COLUMNS,
    "order",
    "term_rel_norm",
    "rho_ratio",
    "rho_root",
    "rho_ratio_drift",
    "rho_root_drift",
)


@torch.no_grad()
def radius_rows(study, ids, num_classes, model_options):
    """Claim C6: the radius of convergence in λ (one λ for every module) of fresh
    transformers, per norm, depth (blocks) and seed of ``study`` (the config's
    ``transformer.radius``): ``expansion.radius_estimates`` of the Taylor terms up to the
    study's order K over the batch of token ids ``ids`` (ratio and root tests, and their
    drift from order K − 2). ``term_rel_norm`` = ‖T_K‖/‖x_0‖."""
    order = study["order"]
    rows = []
    for norm in study["norm"]:
        for depth in study["depth"]:
            for seed in study["seed"]:
                model = fresh_transformer(
                    study["width"], depth, norm, seed, ids.shape[1], num_classes, model_options
                )
                x0 = model.stem(ids)
                unit = torch.ones(2 * depth, dtype=torch.float64)
                terms = expansion.taylor_terms(model, x0, order, unit).terms
                estimate = expansion.radius_estimates(terms)
                rows.append(
                    {
                        "dataset": study["dataset"],
                        "arch": "transformer",
                        "activation": model_options.get("activation"),
                        "norm": norm,
                        "width": study["width"],
                        "depth": depth,
                        "modules": 2 * depth,
                        "seed": seed,
                        "order": order,
                        "term_rel_norm": (terms[order].norm() / x0.norm()).item(),
                        "rho_ratio": estimate.ratio.item(),
                        "rho_root": estimate.root.item(),
                        "rho_ratio_drift": estimate.ratio_drift.item(),
                        "rho_root_drift": estimate.root_drift.item(),
                    }
                )
    return rows
