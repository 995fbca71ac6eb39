"""What the expansion terms say about real networks: the rows behind results/expansion/.

- C5, orders: ‖P_k‖ and ‖λ^k T_k‖ relative to ‖x_n − x_0‖, at init and after training.
- C5, truncated ensembles: test accuracy of the head on x_0 + Σ_{k≤K} P_k.
- Lesions (Veit et al. 2016): test accuracy with one module deleted (its λ set to 0).
- Smooth towers (transformers, issue 20): the radius of convergence of the series in the
  common dial t (λ_l = t·s_l at the run's own λ_l, so t = 1 is the real network), the
  pattern-composition part D_k = λ^k T_k − P_k of each order, and the test accuracy of the
  Taylor truncation (``taylor_test_acc``) next to the paths'.

Norms are computed in float64 on a copy of the model; accuracies in the model's dtype.
Every model is analysed in eval mode (BatchNorm as a per-channel affine map, see
``expansion``). A fresh BatchNorm has running statistics mean 0, var 1, which are not
what it computes; ``calibrate_batchnorm_`` estimates them first.
"""

import copy
import math

import numpy as np
import torch
from torch import nn

from resdepth import expansion
from resdepth.models import build_model

#: Identify a training run in every per-run table.
RUN_KEYS = ("run_id", "dataset", "arch", "depth", "scaling", "seed", "width")

ORDER_COLUMNS = (
    *RUN_KEYS,
    "stage",
    "decomposition",
    "order",
    "rel_norm",
    "remainder_rel_norm",
    "reconstruction_error",
    "lambda_mean",
    "binomial_prior",
    "composition_rel_norm",
    "rho_ratio",
    "rho_root",
    "rho_ratio_drift",
    "rho_root_drift",
)
TRUNCATED_ACCURACY_COLUMNS = (*RUN_KEYS, "order", "test_acc", "full_test_acc", "taylor_test_acc")
LESION_COLUMNS = (*RUN_KEYS, "module", "position", "test_acc", "full_test_acc", "acc_drop")
#: The per-run tables, gathered over runs into results/expansion/<name>.csv.
RUN_TABLE_COLUMNS = {
    "orders": ORDER_COLUMNS,
    "truncated_accuracy": TRUNCATED_ACCURACY_COLUMNS,
    "lesion": LESION_COLUMNS,
}


@torch.no_grad()
def calibrate_batchnorm_(model, x):
    """Set every BatchNorm's running statistics to those of batch ``x`` (one forward pass
    in training mode), so that in eval mode a fresh model computes what it does in
    training. Leaves the model in eval mode; a model without BatchNorm is unchanged."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: after one batch, exactly its statistics
    model.train()
    model(x)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    return model.eval()


def fresh_model(cell, input_shape, num_classes, arch_options=None):
    """The model of a training cell as training starts: same seed, same builder
    (``arch_options`` with a token data set's ``vocab_size``: ``Prepared.model_options``)."""
    torch.manual_seed(cell["seed"])
    return build_model(
        cell["arch"],
        input_shape,
        num_classes,
        cell["width"],
        cell["depth"],
        cell["scaling"],
        **(arch_options or {}),
    )


def _norms(terms):
    """Frobenius norm of each term over the whole batch: (K+1, B, ...) -> (K+1,)."""
    return terms.flatten(1).norm(dim=1)


def _float64_inputs(x):
    """Model inputs in float64 for the norms; token ids stay integers."""
    return x.double() if x.is_floating_point() else x


#: The radius columns of a row without an estimate.
NO_RADIUS = dict.fromkeys(("rho_ratio", "rho_root", "rho_ratio_drift", "rho_root_drift"), math.nan)


def radius_in_lambda(terms, lambda_mean):
    """``expansion.radius_estimates`` of the Taylor terms at the tower's own scales, whose
    radius ρ_t is in the dial t (t = 1 is the network), converted to the mean λ:
    ρ_λ = λ̄·ρ_t; the series converges at the network's λ iff λ̄ < ρ_λ. Drifts (from order
    K − 2) are relative, unchanged by the conversion."""
    estimate = expansion.radius_estimates(terms)
    return {
        "rho_ratio": lambda_mean * estimate.ratio.item(),
        "rho_root": lambda_mean * estimate.root.item(),
        "rho_ratio_drift": estimate.ratio_drift.item(),
        "rho_root_drift": estimate.root_drift.item(),
    }


@torch.no_grad()
def order_rows(model, x, max_order):
    """Per-order norms of both decompositions for one model on model inputs ``x``.

    ``rel_norm`` = ‖term_k‖ / ‖x_n − x_0‖ (NaN when the tower is the identity, e.g.
    SkipInit at init); ``remainder_rel_norm`` the same for everything above order K;
    ``reconstruction_error`` = ‖Σ_k term_k + remainder − x_n‖ / ‖x_n‖ against a separate
    forward pass. ``binomial_prior`` = C(n, k) λ̄^k with λ̄ the mean |λ_l| of the tower.
    ``composition_rel_norm`` = ‖D_k‖ / ‖x_n − x_0‖ with D_k = λ^k T_k − P_k
    (``expansion.composition_terms``), the same on both rows of an order: for ReLU towers
    what mask changes add, for transformers what moving attention patterns (and LayerNorm
    scales, gates) add beyond the frozen paths. Paths freeze every activation at its
    secant gate (ReLU: its mask; GELU: Φ(h), a convention; ``expansion.FREEZE_POLICIES``).
    Smooth towers (``expansion.is_piecewise_linear`` false) with orders up to K ≥ 4:
    ``rho_ratio``, ``rho_root`` estimate the radius of convergence in λ at order K, with
    their drift from K − 2 (``radius_in_lambda``), on the rows of order K; NaN elsewhere
    and for ReLU towers, whose Taylor series at λ = 0 is a polynomial.
    Orders go up to min(max_order, number of modules). Rows lack the run keys and stage.
    """
    model = copy.deepcopy(model).double().eval()
    tower = expansion.tower_of(model)
    depth = len(tower.branches)
    order = min(max_order, depth)
    x0 = model.stem(_float64_inputs(x))
    output = tower(x0)
    residual_norm = (output - x0).norm().item()
    lambda_mean = tower.scales().abs().mean().item()
    taylor = expansion.taylor_terms(tower, x0, order)
    path = expansion.path_terms(tower, x0, order, freeze="secant")
    scale = residual_norm if residual_norm > 0 else math.nan
    # D_k as expansion.composition_terms defines it, from the two expansions at hand
    composition = (_norms(taylor.terms - path.terms) / scale).tolist()
    smooth = not expansion.is_piecewise_linear(tower) and order >= 4
    radius = radius_in_lambda(taylor.terms, lambda_mean) if smooth else NO_RADIUS
    rows = []
    for decomposition, result in (("taylor", taylor), ("path", path)):
        reconstruction = result.terms.sum(0) + result.remainder - output
        for k, norm in enumerate(_norms(result.terms).tolist()):
            rows.append(
                {
                    "decomposition": decomposition,
                    "order": k,
                    "rel_norm": norm / scale,
                    "remainder_rel_norm": result.remainder.norm().item() / scale,
                    "reconstruction_error": (reconstruction.norm() / output.norm()).item(),
                    "lambda_mean": lambda_mean,
                    "binomial_prior": math.comb(depth, k) * lambda_mean**k,
                    "composition_rel_norm": composition[k],
                    **(radius if k == order else NO_RADIUS),
                }
            )
    return rows


def _batches(x, y, batch_size):
    for i in range(0, len(y), batch_size):
        yield x[i : i + batch_size], y[i : i + batch_size]


@torch.no_grad()
def truncated_accuracy_rows(model, x, y, max_order, batch_size):
    """Test accuracy of ``head(x_0 + Σ_{k≤K} P_k)`` (``test_acc``) and of the Taylor
    truncation ``head(Σ_{k≤K} λ^k T_k)`` (``taylor_test_acc``, smooth towers only: NaN for
    ReLU towers) for K = 0 .. min(max_order, number of modules), and of the full model
    (``full_test_acc``). Beyond the radius of convergence the Taylor truncation diverges as
    K grows; the paths always sum to the network. Rows lack the run keys."""
    model = model.eval()
    tower = expansion.tower_of(model)
    order = min(max_order, len(tower.branches))
    smooth = not expansion.is_piecewise_linear(tower)
    correct = torch.zeros((2, order + 1), dtype=torch.long)
    correct_full = 0

    def hits(terms):
        partial_sums = terms.cumsum(0)
        logits = model.head(partial_sums.flatten(0, 1)).unflatten(0, partial_sums.shape[:2])
        return (logits.argmax(-1) == yb).sum(1).cpu()

    for xb, yb in _batches(x, y, batch_size):
        x0 = model.stem(xb)
        correct[0] += hits(expansion.path_terms(tower, x0, order, freeze="secant").terms)
        if smooth:
            correct[1] += hits(expansion.taylor_terms(tower, x0, order).terms)
        correct_full += int((model(xb).argmax(-1) == yb).sum())
    full = correct_full / len(y)
    return [
        {
            "order": k,
            "test_acc": p / len(y),
            "full_test_acc": full,
            "taylor_test_acc": t / len(y) if smooth else math.nan,
        }
        for k, (p, t) in enumerate(zip(*correct.tolist(), strict=True))
    ]


def lesion_modules(depth, max_modules):
    """Which modules to delete one at a time: all of them, or ``max_modules`` evenly
    spaced ones (first and last included) when the tower is deeper than that."""
    if max_modules is None or max_modules >= depth:
        return list(range(depth))
    return sorted({round(i) for i in np.linspace(0, depth - 1, max_modules)})


@torch.no_grad()
def lesion_rows(model, x, y, modules, batch_size):
    """Test accuracy with module l deleted (λ_l = 0, the skip path alone), for each l in
    ``modules``; ``position`` = l / (depth − 1), 0 for the first module, 1 for the last.
    Rows lack the run keys."""
    model = model.eval()
    tower = expansion.tower_of(model)
    depth = len(tower.branches)
    scales = tower.scales().detach()
    correct = dict.fromkeys(modules, 0)
    correct_full = 0
    for xb, yb in _batches(x, y, batch_size):
        x0 = model.stem(xb)
        correct_full += int((model.head(tower(x0)).argmax(-1) == yb).sum())
        for module in modules:
            lesioned = scales.clone()
            lesioned[module] = 0
            logits = model.head(expansion.tower_forward(tower, x0, lesioned))
            correct[module] += int((logits.argmax(-1) == yb).sum())
    full = correct_full / len(y)
    return [
        {
            "module": module,
            "position": module / (depth - 1) if depth > 1 else 0.0,
            "test_acc": correct[module] / len(y),
            "full_test_acc": full,
            "acc_drop": full - correct[module] / len(y),
        }
        for module in modules
    ]


def run_tables(run_id, cell, status, state_dict, data, settings, arch_options=None):
    """The three per-run tables of one training run, as lists of rows.

    ``orders``: both decompositions at initialisation (the run's seed; BatchNorm
    calibrated on the first training inputs) and, unless the run diverged, after
    training. ``truncated_accuracy`` and ``lesion``: the trained network on the whole
    test set (none for a diverged run). ``data`` is a ``Prepared`` data set on the
    device to use; ``settings`` the config's ``expansion`` section.
    """
    keys = {"run_id": run_id, **{key: cell[key] for key in RUN_KEYS[1:]}}
    device = data.y_test.device

    def model():
        options = data.model_options(arch_options)
        built = fresh_model(cell, data.input_shape, data.num_classes, options)
        return built.to(device)

    norm_batch = data.inputs(data.x_test[: settings["batch_size"]])
    init = calibrate_batchnorm_(model(), data.inputs(data.x_train[: settings["batch_size"]]))
    stages = [("init", init)]
    if status == "ok":
        trained = model()
        trained.load_state_dict(state_dict)
        stages.append(("trained", trained.eval()))
    tables = {"orders": [], "truncated_accuracy": [], "lesion": []}
    for stage, net in stages:
        for row in order_rows(net, norm_batch, settings["max_order"]):
            tables["orders"].append({**keys, "stage": stage, **row})
    if status == "ok":
        x, y, batch = data.inputs(data.x_test), data.y_test, settings["eval_batch_size"]
        for row in truncated_accuracy_rows(trained, x, y, settings["max_order"], batch):
            tables["truncated_accuracy"].append({**keys, **row})
        modules = lesion_modules(cell["depth"], settings["lesion_max_modules"])
        for row in lesion_rows(trained, x, y, modules, batch):
            tables["lesion"].append({**keys, **row})
    return tables
