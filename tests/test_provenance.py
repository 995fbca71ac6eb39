"""Every training run records the code, libraries and settings that made it."""

import json
import subprocess

import pandas as pd
import pytest
import torch
from conftest import REPO, tiny_config

from resdepth import aggregate, grid, provenance


def test_code_version_is_the_checkouts_commit(monkeypatch):
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert provenance.SOURCE_ROOT == REPO
    assert provenance.code_version() in (head, f"{head}+dirty")


def test_code_version_of_a_copy_outside_a_checkout_is_unknown(monkeypatch, tmp_path):
    monkeypatch.setattr(provenance, "SOURCE_ROOT", tmp_path)
    monkeypatch.setattr(provenance.metadata, "version", lambda name: "0.1.0")
    assert provenance.code_version() == "0.1.0"  # an installed package: its version

    def not_installed(name):
        raise provenance.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(provenance.metadata, "version", not_installed)
    assert provenance.code_version() is None


def test_flattened_record_has_one_key_per_leaf():
    record = {"run_id": "r", "provenance": {"torch": "2", "training": {"lr": 0.1, "gc": {}}}}
    assert aggregate.flattened(record) == {
        "run_id": "r",
        "provenance.torch": "2",
        "provenance.training.lr": 0.1,
        "provenance.training.gc": {},
    }


def installed_version():
    try:
        return provenance.metadata.version("resdepth")  # after `pip install -e .`
    except provenance.metadata.PackageNotFoundError:
        return None


@pytest.mark.workflow
def test_every_run_records_its_provenance(finished):
    config = tiny_config()
    runs = pd.read_csv(finished.path("results/runs.csv"))
    for run_id in grid.training_runs(config):
        metrics = json.loads(finished.path(f"results/runs/{run_id}/metrics.json").read_text())
        record = metrics["provenance"]
        assert record["training"] == config["training"], run_id  # execution settings too
        assert record["arch_options"] == config["arch_options"]["mlp"]
        assert record["torch"] == torch.__version__ and record["cuda"] == torch.version.cuda
        # The tests' copy is not a git checkout: the installed package's version, if any.
        assert record["code_version"] == installed_version()
        assert len(record["code_sha256"]) == 64
    assert (runs["provenance.torch"] == torch.__version__).all()
    assert (runs["provenance.training.momentum"] == config["training"]["momentum"]).all()
