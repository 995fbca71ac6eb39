"""Run a command as it runs on the README's runtime install (`tools/install.sh`, no `dev`).

The test environment holds the dev tools too (pytest, ruff, snakefmt) and whatever they pull
in, so a command that imports a package the runtime pins do not install (pygments, for
`snakemake --report`) passes here and fails for a user. `runtime_only_env` gives a child
process a `sitecustomize` that refuses to import any module whose distribution is outside
the closure of requirements.txt's pins (`envlock.runtime_closure`): such an import fails as
it would on the runtime install, in snakemake and in every rule script it starts.
"""

import importlib.metadata as metadata
import os
import re

from envlock import runtime_closure
from packaging.utils import canonicalize_name

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
    blocked = modules_outside(runtime_closure())
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE.format(blocked=blocked))
    path = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path}
