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
