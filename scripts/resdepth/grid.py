"""The training grid: config → one cell (settings dict) per job, keyed by a readable run id.

Torch-free, because the Snakefile imports it to plan the DAG.
"""

import itertools
import math

from resdepth.scalings import FIXED_LAMBDA_NAMES, branch_scale, is_fixed_lambda, scaling_token

#: A cell's settings, in run-id order.
CELL_KEYS = ("dataset", "arch", "depth", "scaling", "seed", "width", "lr", "epochs", "batch_size")


def run_id(cell):
    """The run's name: every cell setting, and ``-clip{g}`` for a clipped run (only the
    λ sweep's, ``capacity.grad_clip``), so a clipped run is never the grid's."""
    c = cell
    clip = f"-clip{c['grad_clip']:g}" if c.get("grad_clip") else ""
    return (
        f"{c['dataset']}-{c['arch']}-n{c['depth']}-{scaling_token(c['scaling'])}"
        f"-w{c['width']}-lr{c['lr']:g}-e{c['epochs']}-b{c['batch_size']}-s{c['seed']}{clip}"
    )


def grid_cells(grid):
    """Every cell of the Cartesian product of the grid's lists."""
    values = [grid[key] for key in CELL_KEYS]
    return [dict(zip(CELL_KEYS, combo, strict=True)) for combo in itertools.product(*values)]


def add_run(runs, cell, section):
    """Add ``cell`` to ``runs`` under its run id; the same cell twice is one run.

    Two different cells with one run id (``lr`` 0.02 and 0.020000001 both print as
    ``lr0.02``) would silently drop one of them: that is an error naming ``section``.
    """
    key = run_id(cell)
    if runs.setdefault(key, cell) != cell:
        raise ValueError(
            f"config key {section}: two runs share the run id {key!r} "
            f"({runs[key]} and {cell}); make the values differ in their first 6 digits"
        )


def grid_runs(config):
    """The runs of the ``grid`` section alone, ``{run_id: cell}``: the accuracy table,
    the training curves and the expansion study are about these."""
    runs = {}
    for cell in grid_cells(config["grid"]):
        add_run(runs, cell, "grid")
    return runs


def training_runs(config):
    """All training runs the config asks for, ``{run_id: cell}``, in config order.

    The grid's cells come first, then the λ sweep's; a cell already in the grid is not
    added twice, so the sweep adds only its own jobs.
    """
    runs = grid_runs(config)
    for cell in [*runs.values(), *capacity_runs(config).values()]:
        if cell["dataset"] not in config.get("datasets", {}):
            raise ValueError(
                f"a training run uses dataset {cell['dataset']!r} but the config has no "
                f"'datasets.{cell['dataset']}' section to prepare it"
            )
        add_run(runs, cell, "capacity")
    return runs


def capacity_lambdas(sweep):
    """The λ sweep's fixed λ: ``lambda_count`` values evenly spaced in log λ from
    ``lambda_min`` to ``lambda_max``, rounded to 3 significant digits so that the run id
    (``lam{λ:g}``) names each λ exactly."""
    low, high, count = sweep["lambda_min"], sweep["lambda_max"], sweep["lambda_count"]
    if not 0 < low < high:
        raise ValueError(
            f"capacity: need 0 < lambda_min < lambda_max, got lambda_min={low}, lambda_max={high}"
        )
    step = math.log(high / low) / (count - 1)
    return list(dict.fromkeys(float(f"{low * math.exp(i * step):.3g}") for i in range(count)))


def capacity_runs(config):
    """The λ sweep's runs (claim C4), ``{run_id: cell}``; empty without a ``capacity``
    section. The sweep reads GC from the runs' history, so it needs GC tracking on.

    Every scaling of the sweep is trained unclipped, for every seed: these runs measure
    the stability limit and decide C4. With ``clipped`` set, the fixed-λ scalings at or
    above ``clipped.lambda_min`` are trained once more with their gradient norm clipped
    at ``clipped.grad_clip`` (the cell carries it): a separate curve past the limit.
    """
    sweep = config.get("capacity")
    if not sweep:
        return {}
    if not config["training"].get("gc", {}).get("every"):
        raise ValueError(
            "capacity: the λ sweep reads GC from every run's history.csv; "
            "set training.gc.every to 1 or more"
        )
    fixed = ("dataset", "arch", "depth", "width", "lr", "epochs", "batch_size")
    sweep_grid = {key: [sweep[key]] for key in fixed}
    scalings = capacity_scalings(sweep)
    cells = grid_cells({**sweep_grid, "scaling": scalings, "seed": sweep["seed"]})
    clipped = sweep.get("clipped")
    if clipped:
        past = [
            s
            for s in scalings
            if is_fixed_lambda(s) and branch_scale(s, sweep["depth"]) >= clipped["lambda_min"]
        ]
        copies = grid_cells({**sweep_grid, "scaling": past, "seed": sweep["seed"]})
        cells += [{**cell, "grad_clip": clipped["grad_clip"]} for cell in copies]
    runs = {}
    for cell in cells:
        add_run(runs, cell, "capacity")
    return runs


def capacity_scalings(sweep):
    """The sweep's scalings: each of its λ, then the named scalings listed.

    A λ that is, to 3 significant digits, a named scaling's λ at the sweep's depth
    (``inv`` = 1/n is the first one by default) is replaced by that name: same tower,
    same seed, same run, so the sweep reuses the grid's run instead of training a copy
    (its clipped copies are the sweep's own runs: the grid does not clip).
    """
    named_lambdas = {f"{branch_scale(s, sweep['depth']):.3g}": s for s in FIXED_LAMBDA_NAMES}
    lambdas = [named_lambdas.get(f"{lam:.3g}", lam) for lam in capacity_lambdas(sweep)]
    return list(dict.fromkeys(lambdas + sweep["scaling"]))


def cell_for(runs, run_id):
    """The cell of a run id, or an error that says the id is not in the config."""
    if run_id not in runs:
        raise ValueError(f"run id {run_id!r} is not part of the configured grid")
    return runs[run_id]
