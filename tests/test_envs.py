"""The conda environment and requirements.txt pin the same packages."""

import re

import yaml
from conftest import REPO


def pins(lines):
    return {
        name.lower(): version
        for name, version in (
            re.fullmatch(r"\s*([A-Za-z0-9_.-]+)==(\S+)\s*", line).groups()
            for line in lines
            if "==" in line and not line.lstrip().startswith("#")
        )
    }


def test_conda_env_pins_match_requirements():
    requirements = pins((REPO / "requirements.txt").read_text().splitlines())
    for env_file in sorted((REPO / "envs").glob("*.yaml")):
        env = yaml.safe_load(env_file.read_text())
        pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
        assert pins(pip_section) == requirements, env_file.name


def test_every_rule_declares_the_conda_env():
    rules = sorted((REPO / "workflow" / "rules").glob("*.smk"))
    for smk in rules:
        text = smk.read_text()
        n_rules = len(re.findall(r"^rule \w+:", text, flags=re.MULTILINE))
        assert n_rules == text.count('conda:\n        "../../envs/'), smk.name
