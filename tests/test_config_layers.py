"""The config's layers: config files (the default, or complete `--configfile`s laid in
order), then `--config` overrides merged key by key."""

import re

import pytest
import yaml
from conftest import REPO

from resdepth import packs
from resdepth.config_layers import layered_config, merged, typed


def test_overrides_merge_into_mappings_and_replace_everything_else():
    base = {"training": {"threads": 1, "lr": 0.1}, "grid": {"depth": [2, 3], "seed": [0]}}
    overrides = {"training": {"threads": 2}, "grid": {"depth": [4]}}
    assert merged(base, overrides) == {
        "training": {"threads": 2, "lr": 0.1},
        "grid": {"depth": [4], "seed": [0]},
    }
    assert base["grid"]["depth"] == [2, 3]  # the base is not changed


def test_command_line_strings_are_read_back_as_yaml():
    # What Snakemake hands over for --config 'grid={"depth": [4], "scaling": [inv, 0.5]}'.
    raw = {"grid": {"depth": ["4"], "scaling": ["inv", "0.5"]}, "x": {"a": "null", "b": "true"}}
    assert typed(raw) == {
        "grid": {"depth": [4], "scaling": ["inv", 0.5]},
        "x": {"a": None, "b": True},
    }


def test_later_config_files_override_earlier_ones(tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text("training:\n  threads: 7\n")
    config = layered_config([REPO / "config" / "paper.yaml", site], {})
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    assert config["training"] == {**paper["training"], "threads": 7}
    assert config["grid"] == paper["grid"]


def train_jobs(workflow, *args):
    """The training jobs a dry run plans (one per pack): their count and their threads."""
    text = workflow.run("--dry-run", *args).stdout
    jobs = re.findall(r"rule train_\S+:\n(.*?)(?=\n\[|\Z)", text, re.S)
    return len(jobs), {int(t) for job in jobs for t in re.findall(r"threads: (\d+)", job)}


@pytest.mark.workflow
@pytest.mark.parametrize(
    "config_files, threads, threads_override",
    [
        ([], 2, True),  # default: 1 thread
        (["config/paper.yaml"], 1, True),  # paper: 2 threads
        (["config/paper.yaml", "config/site.yaml"], 1, False),  # the site file's 1 thread
    ],
    ids=["default", "paper", "paper+site"],
)
def test_command_line_overrides_reach_the_plan(workflow, config_files, threads, threads_override):
    workflow.path("config/site.yaml").write_text("training:\n  threads: 1\n")
    expected = yaml.safe_load((REPO / (config_files or ["config/config.yaml"])[0]).read_text())
    expected["grid"]["depth"] = [4]
    overrides = ['grid={"depth": [4]}']
    if threads_override:
        overrides.append(f'training={{"threads": {threads}}}')
    configfile = ["--configfile", *config_files] if config_files else []
    count, job_threads = train_jobs(workflow, *configfile, "--config", *overrides)
    assert count == len(packs.training_packs(expected)[1])
    # A job prints its threads only above 1; the conftest runs use 2 cores.
    assert job_threads == ({2} if threads == 2 else set())
