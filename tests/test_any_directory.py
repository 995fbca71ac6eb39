"""The workflow runs from any working directory (`--directory`, as a deployed or `module`
workflow would): its code, default config and schema are found beside the Snakefile, its
results land in the working directory, so two configs' results can live side by side."""

import subprocess
import sys

import pytest
from conftest import REPO, TINY_CONFIG, Workflow, default_config, training_jobs

from resdepth import packs

pytestmark = pytest.mark.workflow

#: Training, the init-norm sweep and aggregation: every kind of library input.
TARGETS = ("results/runs.csv", "results/init_norms.csv")


def snakemake_in(directory, checkout, *args, config=TINY_CONFIG):
    """Snakemake on ``checkout``'s Snakefile with ``directory`` as its working directory,
    started from a third directory, with ``checkout``'s ``config`` (None: the embedded
    default); (returncode, output)."""
    command = [sys.executable, "-m", "snakemake", "--cores", "2"]
    command += ["--snakefile", str(checkout / "Snakefile"), "--directory", str(directory)]
    command += args
    if config:
        command += ["--configfile", str(checkout / config)]  # last: it takes a list
    result = subprocess.run(
        command, cwd=checkout.parent, capture_output=True, text=True, timeout=900
    )
    return result.returncode, result.stdout + result.stderr


def test_smoke_config_runs_with_its_results_outside_the_checkout(tmp_path):
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    in_checkout = Workflow(checkout)  # a copy of the repository's workflow
    elsewhere = tmp_path / "smoke"
    elsewhere.mkdir()

    returncode, output = snakemake_in(elsewhere, checkout, *TARGETS)
    assert returncode == 0, output[-5000:]
    for target in TARGETS:
        assert (elsewhere / target).is_file(), target
    assert len(list((elsewhere / "results/runs").glob("*/metrics.json"))) >= 4
    assert not (checkout / "results").exists()  # the checkout is left as it was

    returncode, output = snakemake_in(elsewhere, checkout, "--dry-run", *TARGETS)
    assert returncode == 0 and "Nothing to be done" in output, output[-3000:]
    # The checkout's own directory holds no results of this config: all to train there.
    assert training_jobs(in_checkout.planned_jobs(None, *TARGETS, "--configfile", TINY_CONFIG))


def test_the_embedded_default_config_is_found_from_any_directory(tmp_path):
    returncode, output = snakemake_in(tmp_path, REPO, "--dry-run", config=None)
    assert returncode == 0, output[-3000:]
    for pack_id in packs.training_packs(default_config())[1]:
        assert f"rule {packs.rule_name(pack_id)}:" in output
