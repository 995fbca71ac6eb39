"""The config's layers: config files (the default, or complete `--configfile`s laid in
order), then `--config` overrides merged key by key."""

import re

import pytest
import yaml
from conftest import REPO

from resdepth import invocation, packs
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


def test_command_line_text_that_is_not_yaml_names_its_key():
    """``--config 'grid={"depth": [4'`` gave a YAML parser traceback."""
    with pytest.raises(ValueError, match=r"--config grid depth\[0\]: '\[4' is not valid YAML"):
        typed({"grid": {"depth": ["[4"]}})


def test_a_json_config_file_is_read_as_json(tmp_path):
    """YAML 1.1 reads the JSON number 2e-2 as the string '2e-2': the schema refused a
    JSON config Snakemake itself had read correctly."""
    path = tmp_path / "site.json"
    path.write_text('{"grid": {"lr": [2e-2], "depth": [1E1]}, "training": {"threads": 2}}')
    assert layered_config([path], {}) == {
        "grid": {"lr": [0.02], "depth": [10.0]},
        "training": {"threads": 2},
    }


@pytest.mark.parametrize("text", ["{}\n", "", "# only a comment\n", "null\n"])
def test_an_empty_config_file_is_refused_by_name(tmp_path, text):
    path = tmp_path / "site.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"config file {path} is empty"):
        layered_config([REPO / "config" / "config.yaml", path], {})


@pytest.mark.parametrize(
    "argv",
    [
        ["snakemake", "--configfile", "a.yaml", "--configfile", "b.yaml"],
        ["snakemake", "--configfiles", "a.yaml", "-n", "--configfile=b.yaml"],
    ],
)
def test_a_repeated_configfile_flag_is_refused(argv):
    """Snakemake keeps only the last flag's files: ``a`` would be dropped silently."""
    with pytest.raises(ValueError, match="given 2 times.*--configfile a.yaml b.yaml"):
        invocation.refuse_repeated_configfile(argv)


def test_one_configfile_flag_with_several_files_is_accepted():
    invocation.refuse_repeated_configfile(["snakemake", "--configfile", "a.yaml", "b.yaml"])
    invocation.refuse_repeated_configfile(["snakemake", "-n"])


def test_a_second_run_is_told_another_run_holds_the_directory(tmp_path):
    """Snakemake checks incomplete files before taking its lock, so a second run was told
    to "rerun with --rerun-incomplete" (the first run's jobs, under it)."""
    invocation.refuse_second_run(["snakemake"], tmp_path / ".snakemake")  # no locks: fine
    locks = tmp_path / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    invocation.refuse_second_run(["snakemake"], tmp_path / ".snakemake")  # empty: fine
    (locks / "0.output.lock").write_text("results/runs/x/metrics.json\n")
    with pytest.raises(RuntimeError, match="another Snakemake run holds.*--unlock"):
        invocation.refuse_second_run(["snakemake", "--cores", "2"], tmp_path / ".snakemake")
    # Jobs Snakemake spawns pass --nolock; --unlock must be able to release a stale lock.
    for flag in ("--nolock", "--unlock"):
        invocation.refuse_second_run(["snakemake", flag], tmp_path / ".snakemake")


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


@pytest.mark.workflow
def test_snakemake_refuses_held_directories_and_dropped_config_files_and_counts_floats(workflow):
    """What Snakemake's own command line gets wrong, on a real dry run: a float depth
    plans the int run id; a lock another run holds, and a repeated --configfile, are
    refused by name before any job (``--unlock`` still releases a stale lock)."""
    result = workflow.run("--dry-run", "--config", 'grid={"depth": [4.0]}')
    assert "-n4-" in result.stdout and "-n4.0-" not in result.stdout
    paper = str(REPO / "config" / "paper.yaml")
    result = workflow.run("--dry-run", "--configfile", paper, "--configfile", paper, check=False)
    assert result.returncode != 0 and "--configfile is given 2 times" in result.stdout
    locks = workflow.path(".snakemake/locks")
    locks.mkdir(parents=True, exist_ok=True)
    (locks / "0.output.lock").write_text("results/accuracy_table.csv\n")
    result = workflow.run("--dry-run", check=False)
    assert result.returncode != 0 and "another Snakemake run holds" in result.stdout
    assert "--rerun-incomplete" not in result.stdout
    workflow.run("--unlock")
    assert not list(locks.glob("*.lock"))
    workflow.run("--dry-run")
