import sys

from snakemake.utils import min_version, validate

min_version("9.0")


# The embedded default, unless --configfile names a complete config of its own:
# merging the two would silently fill a user config's missing keys from the default.
if not config:

    configfile: "config/config.yaml"


validate(config, "../schemas/config.schema.yaml")

sys.path.insert(0, f"{workflow.basedir}/scripts")
from resdepth import grid

TRAIN_RUNS = grid.training_runs(config)


def run_files(name):
    """One path per configured training run, e.g. run_files("metrics.json")."""
    return [f"results/runs/{run_id}/{name}" for run_id in TRAIN_RUNS]


def lib(*names):
    """Library modules a job imports, as inputs: editing one reruns exactly its jobs."""
    return [f"scripts/resdepth/{name}.py" for name in names]
