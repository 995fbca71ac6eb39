"""On a cluster, which rules are submitted and which run where Snakemake runs.

Every rule is classified here: a new rule fails this test until it is put in one set (and
in a `localrules:` directive if it is local). Submitting a rule that takes seconds costs
more in queueing than the work, and `download_cifar10` needs the internet, which compute
nodes often lack (docs/slurm.md).
"""

import json
import subprocess
import sys

from conftest import REPO

SUBMITTED = {
    "train",
    "init_norms",
    "expansion_run",
    "expansion_truncation",
    # the transformer studies at init: float64 towers of up to 512 modules
    "init_norms_transformer",
    "radius_transformer",
    "expansion_truncation_transformer",
}
LOCAL = {
    "all",
    "digits",
    "recall",
    "download_cifar10",
    "cifar10",
    "aggregate_runs",
    "accuracy_table",
    "plot_init_norms",
    "plot_accuracy_vs_depth",
    "plot_training_curves",
    "expansion_tables",
    "plot_expansion",
    "plot_transformer",
    "capacity_tables",
    "capacity_unimodality",
    "plot_capacity",
    "claims",
    "claims_page",
    "paper",
    "record_config",
}

#: Prints {rule: local?} of the workflow as Snakemake parses it (local: a `localrules:`
#: entry, or a rule with nothing to run such as `all`).
PROBE = """
import json
from pathlib import Path

from snakemake.api import SnakemakeApi
from snakemake.settings.types import OutputSettings, ResourceSettings

with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
    workflow = api.workflow(ResourceSettings(), snakefile=Path("Snakefile"))._workflow
    local = {r.name: r.name in workflow._localrules or r.norun for r in workflow.rules}
    print(json.dumps(local))
"""


def test_every_rule_is_either_submitted_or_local():
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, check=True
    )
    # One training rule per pack (train.smk), train_<pack id>: classified as "train".
    local = {
        ("train" if name.startswith("train_") else name): is_local
        for name, is_local in json.loads(result.stdout.strip().splitlines()[-1]).items()
    }
    assert {name for name, is_local in local.items() if is_local} == LOCAL
    assert {name for name, is_local in local.items() if not is_local} == SUBMITTED
