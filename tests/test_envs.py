"""The requirement files, the lock (constraints.txt) and the conda environment agree.

tools/envlock.py writes the lock and the conda environment from the installed environment;
these tests fail when a pin changed without them being regenerated.
"""

import re

import envlock
import yaml
from conftest import REPO
from packaging.utils import canonicalize_name


def pins(lines):
    """``{name: version}`` of the ``name==version`` lines (comments and -r lines skipped)."""
    return {
        canonicalize_name(name): version
        for name, version in (
            re.fullmatch(r"\s*([A-Za-z0-9_.-]+)==(\S+)\s*", line).groups()
            for line in lines
            if "==" in line and not line.lstrip().startswith("#")
        )
    }


def file_pins(name):
    return pins((REPO / name).read_text().splitlines())


def test_lock_holds_every_pin_at_its_version():
    lock = file_pins("constraints.txt")
    for name in ("requirements.txt", "requirements-dev.txt"):
        for package, version in file_pins(name).items():
            assert lock.get(package) == version, f"{name}: {package}=={version}"


def test_lock_is_the_installed_closure_of_the_dev_install():
    dev = envlock.closure(envlock.pinned_names(REPO / "requirements-dev.txt"))
    expected = pins(envlock.lock(dev))
    assert file_pins("constraints.txt") == expected, "rerun tools/envlock.py"


def test_conda_env_is_the_runtime_part_of_the_lock():
    lock = file_pins("constraints.txt")
    runtime = set(envlock.runtime_closure()) - set(envlock.VENV_SEED)
    for env_file in sorted((REPO / "envs").glob("*.yaml")):
        env = yaml.safe_load(env_file.read_text())
        pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
        assert pins(pip_section) == {name: lock[name] for name in runtime}, env_file.name


def test_every_rule_declares_the_conda_env():
    rules = sorted((REPO / "workflow" / "rules").glob("*.smk"))
    for smk in rules:
        text = smk.read_text()
        n_rules = len(re.findall(r"^rule \w+:", text, flags=re.MULTILINE))
        assert n_rules == text.count('conda:\n        "../../envs/'), smk.name
