import sys

from snakemake.utils import min_version, validate

min_version("9.0")


# The embedded default, unless --configfile names a complete config of its own:
# merging the two would silently fill a user config's missing keys from the default.
if not config:

    configfile: "config/config.yaml"


validate(config, "../schemas/config.schema.yaml")

sys.path.insert(0, f"{workflow.basedir}/scripts")
from resdepth import cifar10, deps, grid, packs, settings

# The grid's runs and the λ sweep's, and the packs that train them (one job each).
TRAIN_RUNS, PACKS = packs.training_packs(config)
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


def pack_resources(pack_id, attempt=1):
    """Scheduler resources of a pack's training job (see packs.pack_resources)."""
    cells = [TRAIN_RUNS[run_id] for run_id in PACKS[pack_id]]
    return packs.pack_resources(cells, config, attempt)
