"""A site's scheduler resources for the training jobs, in one place (training.site_resources,
docs/slurm.md): every generated train_<pack id> rule carries them, no other rule does, and
changing them reruns nothing."""

import re

import pytest
import yaml
from conftest import REPO, TINY_CONFIG, tiny_config
from snakemake.exceptions import WorkflowError
from test_localrules import SUBMITTED

from resdepth import configcheck

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def job_resources(text):
    """``[(rule, {resource: value})]`` of every job in a dry run's output."""
    jobs = []
    for rule, block in re.findall(r"^rule (\w+):$(.*?)(?=^rule |\Z)", text, re.M | re.S):
        line = re.search(r"resources: (.*)", block).group(1)
        jobs.append((rule, dict(item.split("=", 1) for item in line.split(", "))))
    return jobs


def planned_with_site(workflow, site, gpu=True):
    """The jobs of a dry run of the smoke config (asking for a GPU per training job) with
    ``site`` as the training jobs' site resources, in a site file layered over it."""
    config = tiny_config()
    config["training"]["gpu"] = gpu
    workflow.write_config(config)
    layer = workflow.write_config({"training": {"site_resources": site}}, name="site.yaml")
    result = workflow.run("--dry-run", "--configfile", "config/test.yaml", str(layer))
    return job_resources(result.stdout + result.stderr)


@pytest.mark.workflow
def test_site_resources_reach_every_training_job_and_no_other(workflow):
    jobs = planned_with_site(workflow, {"slurm_partition": "gpu", "gpu_model": "h100"})
    training = [resources for rule, resources in jobs if rule.startswith("train_")]
    others = {rule: resources for rule, resources in jobs if not rule.startswith("train_")}
    assert len(training) >= 3 and {"init_norms", "expansion_run"} <= set(others)
    for resources in training:
        assert resources["slurm_partition"] == "gpu" and resources["gpu_model"] == "h100"
        assert resources["gpu"] == "1"  # the estimates stay
        assert resources["slurm_extra"] == "--signal=TERM@120"
    for resources in others.values():  # the SLURM plugin refuses a GPU model without a GPU
        assert "gpu_model" not in resources and "slurm_partition" not in resources


@pytest.mark.workflow
def test_a_site_value_replaces_the_estimate_it_names(workflow):
    """The --gres form: ``gres`` added, the estimated ``gpu=1`` replaced by 0."""
    jobs = planned_with_site(workflow, {"gres": "gpu:1", "gpu": 0, "runtime": 600})
    training = [resources for rule, resources in jobs if rule.startswith("train_")]
    assert training and all(r["gres"] == "gpu:1" and r["gpu"] == "0" for r in training)
    assert {r["runtime"] for r in training} == {"600"}
    assert {r["mem_mb"] for r in training} != {"0"}  # not named: still the estimate


@pytest.mark.workflow
def test_site_resources_rerun_nothing(finished):
    config = tiny_config()
    config["training"]["site_resources"] = {"slurm_partition": "gpu", "gpu_model": "h100"}
    assert finished.planned_jobs(config) == {}


@pytest.mark.parametrize("name", ["slurm_extra", "pack", "mem", "1gpu", "gpu-model"])
def test_site_resources_the_rules_own_or_malformed_are_refused_by_name(name):
    config = tiny_config()
    config["training"]["site_resources"] = {name: "x"}
    with pytest.raises(WorkflowError, match="site_resources") as refused:
        configcheck.validate(config, SCHEMA)
    assert name in str(refused.value)


def test_site_resource_values_are_plain_strings_or_counts():
    config = tiny_config()
    for value in ({"nested": 1}, -1, ""):
        config["training"]["site_resources"] = {"gpu_model": value}
        with pytest.raises(WorkflowError, match="site_resources"):
            configcheck.validate(config, SCHEMA)


@pytest.mark.workflow
def test_a_site_profile_and_site_file_leave_the_tracked_tree_alone(workflow, tmp_path):
    """docs/slurm.md's setup: the account and partition of every job in a profile of the
    site's own, the training jobs' GPU partition and model in a site file, both outside
    the checkout; the repository's profile keeps the other submitted jobs' sizes."""
    site_profile = tmp_path / "mysite"
    site_profile.mkdir()
    (site_profile / "config.yaml").write_text(
        "default-resources: {slurm_account: my_project, slurm_partition: cpu}\n"
    )
    site_file = tmp_path / "site.yaml"
    site_file.write_text("training: {site_resources: {slurm_partition: gpu, gpu_model: h100}}\n")
    result = workflow.run(
        "--dry-run",
        *("--profile", str(site_profile), "--workflow-profile", "workflow/profiles/slurm"),
        *("--configfile", TINY_CONFIG, str(site_file)),
    )
    jobs = dict(job_resources(result.stdout + result.stderr))
    assert all(res["slurm_account"] == "my_project" for res in jobs.values())
    for rule, resources in jobs.items():
        training = rule.startswith("train_")
        assert resources["slurm_partition"] == ("gpu" if training else "cpu"), rule
        assert ("gpu_model" in resources) == training, rule
    sizes = yaml.safe_load((REPO / "workflow/profiles/slurm/config.yaml").read_text())
    for rule in SUBMITTED - {"train"}:
        expected = sizes["set-resources"][rule]
        assert jobs[rule]["mem_mb"] == str(expected["mem_mb"]), rule
        assert jobs[rule]["runtime"] == str(expected["runtime"]), rule


def test_the_slurm_profile_sizes_every_submitted_rule_but_training():
    """Training jobs size themselves; every other submitted rule has an entry, and no rule
    gets default-resources from the repository (they would replace a site profile's)."""
    profile = yaml.safe_load((REPO / "workflow/profiles/slurm/config.yaml").read_text())
    assert "default-resources" not in profile
    assert set(profile["set-resources"]) == SUBMITTED - {"train"}
