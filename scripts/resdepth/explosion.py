"""Claim C2: the output norm of freshly initialised towers as a function of depth.

Computed in float64 so λ = 1 towers of 1000 modules (norm growth ≈ √3 per module
with He init, i.e. ~1e238) stay finite; norms are taken after rescaling by the
largest entry so squaring never overflows.
"""

import math

import torch

from resdepth.models import build_model
from resdepth.scalings import branch_scale

COLUMNS = (
    "dataset",
    "arch",
    "width",
    "depth",
    "scaling",
    "seed",
    "lambda",
    "rel_norm",
    "log10_rel_norm",
)


def stable_norm(x):
    """Frobenius norm of ``x`` that does not overflow when the entries are huge."""
    scale = x.abs().max()
    return (scale * (x / scale).norm()).item() if scale > 0 else 0.0


@torch.no_grad()
def init_norm_rows(sweep, x, num_classes, arch_options=None):
    """One row per (scaling, depth, seed) of ``sweep`` (the config's init_norms section).

    ``x`` is a fixed batch of model inputs; BatchNorm is in training mode, as at the
    first step of training.
    """
    rows = []
    x = x.double()
    for scaling in sweep["scaling"]:
        for depth in sweep["depth"]:
            for seed in sweep["seed"]:
                torch.manual_seed(seed)
                model = build_model(
                    sweep["arch"],
                    tuple(x.shape[1:]),
                    num_classes,
                    sweep["width"],
                    depth,
                    scaling,
                    **(arch_options or {}),
                ).double()
                x0 = model.stem(x)
                rel = stable_norm(model.tower(x0)) / stable_norm(x0)
                rows.append(
                    {
                        "dataset": sweep["dataset"],
                        "arch": sweep["arch"],
                        "width": sweep["width"],
                        "depth": depth,
                        "scaling": scaling,
                        "seed": seed,
                        "lambda": branch_scale(scaling, depth),
                        "rel_norm": rel,
                        "log10_rel_norm": math.log10(rel) if rel > 0 else -math.inf,
                    }
                )
    return rows


#: Claim C2 for transformers (results/init_norms_transformer.csv): ``depth`` is blocks,
#: ``modules`` = 2·depth residual modules (attention, MLP), λ from ``modules``.
TRANSFORMER_COLUMNS = (
    "dataset",
    "arch",
    "width",
    "depth",
    "modules",
    "norm",
    "scaling",
    "seed",
    "lambda",
    "rel_norm",
    "log10_rel_norm",
    "token_cosine",
    "token_cosine_stem",
)


def token_cosine(x):
    """Mean cosine similarity between the token vectors of each sequence, over every pair
    of distinct positions and every sequence of ``x`` (B, T, d): 1 when all tokens point
    the same way (rank collapse, Noci et al. 2022), about 0 for unrelated tokens. Each
    vector is divided by its largest entry first, so huge streams do not overflow."""
    x = x / x.abs().amax(-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
    unit = torch.nn.functional.normalize(x, dim=-1)
    gram = unit @ unit.transpose(-1, -2)  # (B, T, T)
    length = x.shape[1]
    if length < 2:
        raise ValueError("token cosine similarity needs sequences of at least 2 tokens")
    off_diagonal = gram.sum((-1, -2)) - gram.diagonal(dim1=-2, dim2=-1).sum(-1)
    return (off_diagonal / (length * (length - 1))).mean().item()


@torch.no_grad()
def transformer_init_norm_rows(study, ids, num_classes, model_options):
    """One row per (norm, scaling, depth, seed) of ``study`` (the config's
    ``transformer.init_norms``), in float64 on the token ids ``ids`` (B, T).

    ``rel_norm`` = ‖x_n‖/‖x_0‖ over the batch (x_0 = token + position embedding), and
    ``token_cosine`` of x_n next to that of x_0 (``token_cosine_stem``). ``model_options``
    are the builder's (arch_options.transformer and the vocabulary); each row sets
    ``norm`` from the study's list.
    """
    rows = []
    for norm in study["norm"]:
        for scaling in study["scaling"]:
            for depth in study["depth"]:
                for seed in study["seed"]:
                    torch.manual_seed(seed)
                    options = {**model_options, "norm": norm}
                    model = build_model(
                        "transformer",
                        tuple(ids.shape[1:]),
                        num_classes,
                        study["width"],
                        depth,
                        scaling,
                        **options,
                    ).double()
                    x0 = model.stem(ids)
                    xn = model.tower(x0)
                    rel = stable_norm(xn) / stable_norm(x0)
                    rows.append(
                        {
                            "dataset": study["dataset"],
                            "arch": "transformer",
                            "width": study["width"],
                            "depth": depth,
                            "modules": 2 * depth,
                            "norm": norm,
                            "scaling": scaling,
                            "seed": seed,
                            "lambda": branch_scale(scaling, 2 * depth),
                            "rel_norm": rel,
                            "log10_rel_norm": math.log10(rel) if rel > 0 else -math.inf,
                            "token_cosine": token_cosine(xn),
                            "token_cosine_stem": token_cosine(x0),
                        }
                    )
    return rows
