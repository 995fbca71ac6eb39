"""The README's commands work on the README's runtime install (`tools/install.sh`, no `dev`).

The tiny pipeline run every workflow test reads (conftest's `finished`) already runs under
`runtime_only_env`; these tests add the README's other commands.
"""

import subprocess
import sys

import pytest
import yaml
from conftest import TINY_CONFIG, Workflow
from runtime_only import runtime_only_env

from resdepth import plan


@pytest.fixture(scope="module")
def runtime_env(tmp_path_factory):
    return runtime_only_env(tmp_path_factory.mktemp("runtime-only"))


def imports(module, env):
    return subprocess.run([sys.executable, "-c", f"import {module}"], env=env).returncode == 0


def test_runtime_env_refuses_dev_tools_and_allows_the_pins(runtime_env):
    assert not imports("pytest", runtime_env)
    assert not imports("snakefmt", runtime_env)
    for module in ("snakemake", "torch", "matplotlib", "seaborn", "sklearn", "yaml"):
        assert imports(module, runtime_env), module


@pytest.mark.workflow
def test_report_builds_on_the_runtime_install(finished, tmp_path):
    report = tmp_path / "report.html"
    assert "PYTHONPATH" in finished.env  # conftest runs `finished` under runtime_only_env
    finished.run("--report", str(report), "--configfile", TINY_CONFIG)
    assert report.stat().st_size > 0


@pytest.mark.workflow
@pytest.mark.parametrize(
    "args",
    [
        (),
        ("--configfile", "config/paper.yaml"),
        ("--workflow-profile", "workflow/profiles/local-gpu", "--configfile", "config/paper.yaml"),
    ],
    ids=["default", "paper", "paper-local-gpu"],
)
def test_readme_runs_plan_on_the_runtime_install(tmp_path, runtime_env, args):
    """Each dry run plans; one of a config with GPU jobs prints their cost first."""
    result = Workflow(tmp_path, runtime_env).run("--dry-run", *args)
    printed = "Plan of the GPU training jobs" in result.stderr
    assert printed == ("config/paper.yaml" in args)
    if printed:
        config = yaml.safe_load((tmp_path / "config" / "paper.yaml").read_text())
        assert plan.summary(config) in result.stderr
