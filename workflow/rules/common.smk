import os
import sys

from snakemake.utils import min_version

min_version("9.0")


sys.path.insert(0, f"{workflow.basedir}/scripts")
from resdepth import cifar10, config_layers, configcheck, deps, grid, invocation, packs
from resdepth import settings

# Before anything else: a second run in a held directory, a dropped --configfile.
invocation.refuse_second_run(sys.argv)
invocation.refuse_repeated_configfile(sys.argv)

# The embedded default, unless --configfile names complete configs of their own: merging
# them into the default would silently fill a user config's missing keys from it.
if not workflow.config_settings.configfiles:

    configfile: f"{workflow.basedir}/config/config.yaml"


# Rebuilt from its layers (resdepth/config_layers.py): Snakemake merges --config before
# the default is loaded, and hands nested --config values over as strings.
config.update(
    config_layers.layered_config(workflow.configfiles, workflow.config_settings.config)
)
# The schema, then what it cannot express: both before any job is planned.
configcheck.validate(config, f"{workflow.basedir}/workflow/schemas/config.schema.yaml")

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
    inputs: editing one reruns exactly the jobs whose code it is part of. Found beside
    the Snakefile, so the workflow runs from any working directory (--directory), and
    named relative to it, so a checkout moved with its results reruns nothing."""
    source = f"{workflow.basedir}/scripts/{script}.py"
    library = os.path.relpath(f"{workflow.basedir}/scripts/resdepth")
    return [f"{library}/{name}.py" for name in deps.library_modules(source)]


#: What every training job asks its scheduler for at this site, beyond the estimates
#: (training.site_resources: a partition, a GPU model, a --gres form). Execution only.
SITE_RESOURCES = config["training"].get("site_resources", {})
#: The training jobs' own resources, estimated per pack: a site value replaces them.
PACK_RESOURCES = ("mem_mb", "runtime", "gpu")


def pack_resource(pack_id, name):
    """Resource ``name`` (one of PACK_RESOURCES) of a pack's training job: the site's
    value if it sets one (e.g. ``gpu: 0`` with a ``gres``), else the estimate per attempt
    (see packs.pack_resources)."""
    if name in SITE_RESOURCES:
        return SITE_RESOURCES[name]
    cells = [TRAIN_RUNS[run_id] for run_id in PACKS[pack_id]]

    def resource(wildcards, attempt):
        return packs.pack_resources(cells, config, attempt)[name]

    return resource


def site_resources():
    """The site's resources that every training job adds to its own (PACK_RESOURCES come
    through pack_resource)."""
    return {k: v for k, v in SITE_RESOURCES.items() if k not in PACK_RESOURCES}


def train_params(pack_id):
    """Result-defining settings of a pack's job: what decides that its outputs are stale.
    The cells are in the output paths (the run ids), so they need no params of their own.
    """
    cell = TRAIN_RUNS[PACKS[pack_id][0]]
    return dict(
        training=settings.result_settings(config["training"]),
        arch_options=config["arch_options"].get(cell["arch"], {}),
        augment=config["datasets"][cell["dataset"]].get("augment", False),
    )


# Input and param functions of the per-run rules (expansion_run): each looks the run's
# grid cell up from its `run_id` wildcard.


def run_cell(wildcards):
    """The grid cell (dataset, arch, depth, scaling, seed, ...) of the run."""
    return grid.cell_for(TRAIN_RUNS, wildcards.run_id)


def run_data(wildcards):
    """The prepared data set the run trains and is evaluated on."""
    return f"results/data/{run_cell(wildcards)['dataset']}.pt"


def run_arch_options(wildcards):
    """The config's options of the run's architecture."""
    return config["arch_options"].get(run_cell(wildcards)["arch"], {})


def run_augment(wildcards):
    """Whether the run's data set is augmented in training."""
    return config["datasets"][run_cell(wildcards)["dataset"]].get("augment", False)


def cifar10_archive(wildcards):
    """The archive to read: the config's `datasets.cifar10.archive`, else the download."""
    return cifar10.archive_to_read(
        config["datasets"]["cifar10"],
        rules.download_cifar10.output[0],
        prepared="results/data/cifar10.pt",
    )


def cifar10_test_archive_md5(wildcards):
    """The MD5 a test archive declares in the config (None for the official archive)."""
    return config["datasets"]["cifar10"].get("test_archive_md5")


def expansion_figure_tables(wildcards):
    """The tables an expansion figure is drawn from, by name."""
    return EXPANSION_FIGURES[wildcards.figure]


def capacity_manifest(wildcards):
    """The manifest of the sweep's data set: its number of classes flags runs whose
    final train loss is above a uniform guess's."""
    return f"results/data/{config['capacity']['dataset']}.json"


# Issue 20: the studies of fresh transformers (config section `transformer`, optional).
TRANSFORMER = config.get("transformer") or {}


def transformer_study_data(study):
    """The input function giving the prepared data set of a transformer study."""

    def prepared(wildcards):
        return f"results/data/{TRANSFORMER[study]['dataset']}.pt"

    return prepared


def transformer_figure_tables(wildcards):
    """The tables a transformer figure is drawn from, by name."""
    return TRANSFORMER_FIGURES[wildcards.figure]
