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
