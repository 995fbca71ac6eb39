"""The CIFAR-10 side of the workflow: the paper config's plan, and a tiny archive end to end."""

import json
import re

import pandas as pd
import pytest
import yaml
from cifar_archive import write_archive
from conftest import REPO

from resdepth import cifar10, grid

pytestmark = pytest.mark.workflow


def paper_config():
    return yaml.safe_load((REPO / "config" / "paper.yaml").read_text())


def planned_resources(text):
    """``{run_id: {resource: value}}`` of the training jobs (one per pack of runs) in a dry
    run's output: each run gets the resources of its pack's job."""
    jobs = {}
    for block in re.split(r"^rule train_\w+:$", text, flags=re.MULTILINE)[1:]:
        outputs = re.search(r"output: (.*)", block).group(1)
        line = re.search(r"resources: (.*)", block).group(1)
        resources = {k: v for k, v in (item.split("=", 1) for item in line.split(", "))}
        jobs.update(
            dict.fromkeys(re.findall(r"results/runs/([^/]+)/metrics.json", outputs), resources)
        )
    return jobs


def test_paper_config_plans_the_full_grid_with_depth_dependent_resources(workflow):
    config = paper_config()
    cells = config["grid"]
    result = workflow.run("--dry-run", "--configfile", "config/paper.yaml")
    text = result.stdout + result.stderr
    jobs = planned_resources(text)
    assert len(cells["depth"]) * len(cells["scaling"]) * len(cells["seed"]) == 75
    assert set(jobs) == set(grid.training_runs(config)) > set(grid.grid_runs(config))
    for rule in ("download_cifar10", "cifar10", "init_norms"):
        assert re.search(rf"^{rule}\s+1$", text, re.MULTILINE), rule

    by_depth = {}
    for run_id, resources in jobs.items():
        assert resources["gpu"] == "1", run_id
        depth = int(re.search(r"-n(\d+)-", run_id).group(1))
        by_depth.setdefault(depth, set()).add((int(resources["runtime"]), resources["mem_mb"]))
    runtimes = [min(r for r, _ in by_depth[d]) for d in sorted(by_depth)]
    assert runtimes == sorted(runtimes) and runtimes[-1] > 20 * runtimes[0]
    assert int(max(m for _, m in by_depth[1000])) > int(min(m for _, m in by_depth[10]))


def tiny_cifar_config(archive, md5):
    """The paper config shrunk to a few seconds on a CPU and pointed at a test archive."""
    config = paper_config()
    config["datasets"]["cifar10"].update(archive=str(archive), test_archive_md5=md5)
    config["grid"].update(depth=[2], scaling=["inv", "bn"], seed=[0], width=[4])
    config["grid"].update(epochs=[2], batch_size=[8])
    config["training"].update(device="cpu", threads=1, compile=False)
    config["init_norms"].update(width=4, depth=[1, 3], scaling=["one"], seed=[0], batch_size=4)
    config["claims"]["C2"]["min_depths"] = 2  # the two init-norm depths (configcheck)
    return config


def test_tiny_archive_end_to_end(workflow):
    archive = workflow.path("cifar-test.tar.gz")
    write_archive(archive)
    targets = ("results/runs.csv", "results/init_norms.csv")  # tables/plots: their own tests
    config = tiny_cifar_config(archive, cifar10.md5sum(archive))
    workflow.run(*targets, config=config)

    manifest = json.loads(workflow.path("results/data/cifar10.json").read_text())
    assert manifest["n_train"] == 15 and manifest["n_test"] == 3
    assert manifest["input_shape"] == [3, 32, 32] and len(manifest["channel_std"]) == 3
    runs = sorted(workflow.path("results/runs").iterdir())
    assert [run.name.split("-")[3] for run in runs] == ["bn", "inv"]
    for run in runs:
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["status"] == "ok" and metrics["device"] == "cpu"
    assert len(pd.read_csv(workflow.path("results/init_norms.csv"))) == 2
    assert not workflow.path("resources").exists()  # a configured archive is never downloaded
    # The archive removed after preparation: planning still works, nothing to redo.
    archive.unlink()
    assert workflow.planned_jobs(config, *targets) == {}


def test_wrong_checksum_fails_the_prep_job_naming_both_checksums(workflow):
    archive = workflow.path("cifar-test.tar.gz")
    write_archive(archive)
    config = tiny_cifar_config(archive, None)  # the official MD5 cannot match
    result = workflow.run("results/data/cifar10.pt", config=config, check=False)
    assert result.returncode != 0
    log = workflow.path("results/logs/cifar10.log").read_text()
    assert cifar10.ARCHIVE_MD5 in log and cifar10.md5sum(archive) in log and str(archive) in log
    assert not workflow.path("results/data/cifar10.pt").exists()


def test_missing_configured_archive_fails_while_planning(workflow):
    missing = workflow.path("nowhere/cifar-10-python.tar.gz")
    result = workflow.run("--dry-run", config=tiny_cifar_config(missing, None), check=False)
    assert result.returncode != 0
    message = result.stdout + result.stderr
    assert str(missing) in message and "not found" in message and cifar10.ARCHIVE_MD5 in message
