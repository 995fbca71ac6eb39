"""Run a command as it runs on the README's runtime install (`tools/install.sh`, no `dev`).

The test environment holds the dev tools too (pytest, ruff, snakefmt) and whatever they pull
in, so a command that imports a package the runtime pins do not install (pygments, for
`snakemake --report`) passes here and fails for a user. `runtime_only_env` gives a child
process a `sitecustomize` that refuses to import any module whose distribution is outside
the closure of requirements.txt's pins: such an import fails as it would on the runtime
install, in snakemake and in every rule script it starts.
"""

import importlib.metadata as metadata
import os
import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]

#: What `python3 -m venv` puts in every environment before any pin is installed.
VENV_SEED = ("pip", "setuptools")

SITECUSTOMIZE = '''\
"""Written by tests/runtime_only.py: imports outside the runtime install fail."""
import sys

BLOCKED = {blocked!r}


class RuntimeOnly:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(
                f"No module named {{name!r}} (not installed by requirements.txt)", name=name
            )
        return None


sys.meta_path.insert(0, RuntimeOnly())
'''


def runtime_pins(path=REPO / "requirements.txt"):
    """The names pinned in a requirements file (its `-r` includes followed)."""
    names = []
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            names += runtime_pins(path.parent / line[3:].strip())
        elif line:
            names.append(canonicalize_name(Requirement(line).name))
    return names


def runtime_closure(pins):
    """The installed distributions that installing ``pins`` installs: the pins and,
    recursively, their requirements (environment markers evaluated, no extras)."""
    closure, todo = set(), [*pins, *VENV_SEED]
    while todo:
        name = canonicalize_name(todo.pop())
        if name in closure:
            continue
        closure.add(name)
        for spec in metadata.requires(name) or []:
            requirement = Requirement(spec)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return closure


def modules_outside(closure):
    """Top-level modules that only distributions outside ``closure`` provide."""
    providers = metadata.packages_distributions()
    return sorted(
        module
        for module, dists in providers.items()
        if not {canonicalize_name(d) for d in dists} & closure
        and re.fullmatch(r"[A-Za-z_]\w*", module)
    )


def runtime_only_env(folder):
    """The environment of a child process that can import only the runtime install;
    ``folder`` receives its sitecustomize.py."""
    blocked = modules_outside(runtime_closure(runtime_pins()))
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE.format(blocked=blocked))
    path = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path}
