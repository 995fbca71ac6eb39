"""Residual scalings λ (PAPER.md §1) and how they are written (run ids, tables, figures),
kept free of torch so the DAG is planned fast."""

import math

#: Named scalings (PAPER.md §1). Any positive float is also accepted: a fixed λ.
NAMED_SCALINGS = ("one", "inv_sqrt", "inv", "bn", "skipinit")
#: Named scalings that are a fixed λ, set by depth alone: a plain tower like a float λ's
#: (bn adds normalisation, skipinit learns its λ).
FIXED_LAMBDA_NAMES = ("one", "inv_sqrt", "inv")


def parse_scaling(scaling):
    """Return a named scaling unchanged, or a fixed λ as a float; reject anything else."""
    if isinstance(scaling, str) and scaling in NAMED_SCALINGS:
        return scaling
    try:
        value = float(scaling)
    except (TypeError, ValueError):
        raise ValueError(
            f"unknown scaling {scaling!r}: expected one of {', '.join(NAMED_SCALINGS)} "
            "or a positive number (a fixed λ)"
        ) from None
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"a fixed λ must be a positive finite number, got {scaling!r}")
    return value


def branch_scale(scaling, depth):
    """The initial λ of every branch for a tower of ``depth`` branches.

    ``bn`` keeps λ = 1 (normalisation does the taming); ``skipinit`` starts at 0 and is
    learned per branch.
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    scaling = parse_scaling(scaling)
    if isinstance(scaling, float):
        return scaling
    return {
        "one": 1.0,
        "bn": 1.0,
        "inv_sqrt": 1.0 / math.sqrt(depth),
        "inv": 1.0 / depth,
        "skipinit": 0.0,
    }[scaling]


def is_fixed_lambda(scaling):
    """True for a float λ and for the named scalings that are one (FIXED_LAMBDA_NAMES)."""
    scaling = parse_scaling(scaling)
    return isinstance(scaling, float) or scaling in FIXED_LAMBDA_NAMES


def family(scaling):
    """The module family of a scaling: ``plain`` (any fixed λ), ``bn`` or ``skipinit``.
    Runs of one family build towers of the same layers (packs.pack_key)."""
    return "plain" if is_fixed_lambda(scaling) else parse_scaling(scaling)


# How a scaling is written: in run ids, tables and figures, and in which order.

#: The paper's name of each named scaling.
_LABELS = {
    "one": "λ=1",
    "inv_sqrt": "λ=1/√n",
    "inv": "λ=1/n",
    "bn": "BatchNorm",
    "skipinit": "SkipInit",
}


def scaling_name(scaling):
    """The canonical text of a scaling: its name, or a fixed λ written with ``{:g}``."""
    scaling = parse_scaling(scaling)
    return f"{scaling:g}" if isinstance(scaling, float) else scaling


def scaling_token(scaling):
    """How a scaling is written in run ids: its name, or ``lam{λ:g}`` for a fixed λ."""
    name = scaling_name(scaling)
    return f"lam{name}" if isinstance(parse_scaling(scaling), float) else name


def scaling_label(scaling):
    """How the paper names a scaling; used by every table and figure."""
    scaling = parse_scaling(scaling)
    return f"fixed λ={scaling:g}" if isinstance(scaling, float) else _LABELS[scaling]


def scaling_sort_key(scaling):
    """Named scalings in the order of NAMED_SCALINGS, then fixed λ ascending."""
    scaling = parse_scaling(scaling)
    if isinstance(scaling, float):
        return (len(NAMED_SCALINGS), scaling)
    return (NAMED_SCALINGS.index(scaling), 0.0)


def sorted_scalings(scalings):
    """The distinct scalings of ``scalings`` (canonical names) in table order."""
    return sorted({scaling_name(s) for s in scalings}, key=scaling_sort_key)
