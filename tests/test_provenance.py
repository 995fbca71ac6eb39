"""Every training run records the code, libraries and settings that made it."""

import json
import subprocess

import pandas as pd
import pytest
import torch
from conftest import REPO, TRAIN_SETTINGS, tiny_config

from resdepth import aggregate, grid, provenance


def test_code_version_is_the_checkouts_commit(monkeypatch):
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert provenance.SOURCE_ROOT == REPO
    assert provenance.code_version() in (head, f"{head}+dirty")


def git(root, *args):
    return subprocess.run(
        ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A git checkout with a library module and a profile, committed, as the source root."""
    git(tmp_path, "init", "-q")
    for path in ("scripts/resdepth/train.py", "workflow/profiles/slurm/config.yaml"):
        (tmp_path / path).parent.mkdir(parents=True)
        (tmp_path / path).write_text("# committed\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "code")
    monkeypatch.setattr(provenance, "SOURCE_ROOT", tmp_path)
    return tmp_path


def test_a_modified_checkout_is_dirty(checkout):
    head = git(checkout, "rev-parse", "HEAD")
    assert provenance.code_version() == head
    (checkout / "scripts/resdepth/train.py").write_text("# edited\n")
    assert provenance.code_version() == f"{head}+dirty"


def test_untracked_files_and_profile_edits_leave_the_code_version_clean(checkout):
    """docs/slurm.md's site settings (a site file beside the checkout, an edited
    profile) say how to run, not what: they must not mark the results +dirty."""
    head = git(checkout, "rev-parse", "HEAD")
    (checkout / "site.yaml").write_text("training: {site_resources: {gpu_model: h100}}\n")
    (checkout / "scripts/resdepth/notes.py").write_text("# untracked\n")
    (checkout / "workflow/profiles/slurm/config.yaml").write_text("jobs: 5\n")
    assert provenance.code_version() == head


def test_execution_settings_are_kept_alongside_result_settings():
    training = {**TRAIN_SETTINGS, "threads": 3, "site_resources": {"gpu_model": "h100"}}
    record = provenance.provenance(training, {"stem_stride": 2}, augment=True)
    assert record["training"] == training  # execution-only settings too
    assert (record["arch_options"], record["augment"]) == ({"stem_stride": 2}, True)


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
