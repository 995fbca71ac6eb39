import sys

from snakemake.utils import min_version

min_version("9.0")


# The embedded default, unless --configfile names a complete config of its own:
# merging the two would silently fill a user config's missing keys from the default.
# An empty config file is a mistake, not a request for the default.
if not config and workflow.overwrite_configfiles:
    raise ValueError(f"config file {workflow.overwrite_configfiles[-1]} is empty")
if not config:

    configfile: "config/config.yaml"


sys.path.insert(0, f"{workflow.basedir}/scripts")
from resdepth import cifar10, configcheck, deps, grid, settings

# The schema, then what it cannot express: both before any job is planned.
configcheck.validate(config, f"{workflow.basedir}/workflow/schemas/config.schema.yaml")

TRAIN_RUNS = grid.training_runs(config)  # the grid's runs and the λ sweep's
GRID_RUNS = grid.grid_runs(config)


def run_files(name, runs=TRAIN_RUNS):
    """One path per training run (default: all), e.g. run_files("metrics.json")."""
    return per_run_files(f"results/runs/{{run_id}}/{name}", runs)


def per_run_files(pattern, runs):
    """``pattern`` (with a ``{run_id}`` field) filled in for each of ``runs``."""
    return [pattern.format(run_id=run_id) for run_id in runs]


def lib(script):
    """The library modules that ``scripts/<script>.py`` imports, directly or not, as
    inputs: editing one reruns exactly the jobs whose code it is part of."""
    source = f"{workflow.basedir}/scripts/{script}.py"
    return [f"scripts/resdepth/{name}.py" for name in deps.library_modules(source)]


def train_resources(wildcards, attempt=1):
    """Scheduler resources of the training job of a run id (see grid.train_resources)."""
    cell = grid.cell_for(TRAIN_RUNS, wildcards.run_id)
    return grid.train_resources(cell, config, attempt)
