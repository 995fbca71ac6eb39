"""The training grid: config → one cell (settings dict) per job, keyed by a readable run id.

Torch-free, because the Snakefile imports it to plan the DAG.
"""

import itertools

from resdepth.scalings import parse_scaling

#: A cell's settings, in run-id order.
CELL_KEYS = ("dataset", "arch", "depth", "scaling", "seed", "width", "lr", "epochs", "batch_size")


def scaling_token(scaling):
    """How a scaling is written in run ids: its name, or ``lam{λ:g}`` for a fixed λ."""
    scaling = parse_scaling(scaling)
    return f"lam{scaling:g}" if isinstance(scaling, float) else scaling


def run_id(cell):
    c = cell
    return (
        f"{c['dataset']}-{c['arch']}-n{c['depth']}-{scaling_token(c['scaling'])}"
        f"-w{c['width']}-lr{c['lr']:g}-e{c['epochs']}-b{c['batch_size']}-s{c['seed']}"
    )


def grid_cells(grid):
    """Every cell of the Cartesian product of the grid's lists."""
    values = [grid[key] for key in CELL_KEYS]
    return [dict(zip(CELL_KEYS, combo, strict=True)) for combo in itertools.product(*values)]


def training_runs(config):
    """All training runs the config asks for, ``{run_id: cell}``, in config order."""
    runs = {}
    for cell in grid_cells(config["grid"]):
        if cell["dataset"] not in config.get("datasets", {}):
            raise ValueError(
                f"grid.dataset lists {cell['dataset']!r} but the config has no "
                f"'datasets.{cell['dataset']}' section to prepare it"
            )
        runs.setdefault(run_id(cell), cell)
    return runs


def cell_for(runs, run_id):
    """The cell of a run id, or an error that says the id is not in the config."""
    if run_id not in runs:
        raise ValueError(f"run id {run_id!r} is not part of the configured grid")
    return runs[run_id]


def train_resources(cell, attempt=1):
    """Memory (MB) and runtime (min) estimates for a training job; grow with depth.

    Memory also grows with Snakemake's ``attempt``: a job retried after running out of
    memory gets more. Runtime does not: a job stopped at its time limit resumes from its
    checkpoint.
    """
    depth_factor = cell["depth"] * cell["width"] / 4096
    return {
        "mem_mb": attempt * int(1000 + 50 * depth_factor),
        "runtime": int(5 + cell["epochs"] * depth_factor / 10),
    }
