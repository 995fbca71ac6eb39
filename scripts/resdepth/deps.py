"""Which ``resdepth`` modules a script runs, read from its imports and followed through
the library.

The Snakefile declares them as the inputs of the script's jobs, so editing a module
reruns exactly the jobs whose code it is part of, and the list cannot drift from the
imports. Parses, never imports: cheap enough to ask for every rule while planning.
"""

import ast
from functools import cache
from pathlib import Path

LIBRARY = Path(__file__).resolve().parent


def direct_imports(path):
    """Names of the ``resdepth`` modules that the Python source file ``path`` imports."""
    names = set()
    for node in ast.walk(ast.parse(Path(path).read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module == "resdepth":
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("resdepth."):
            names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            modules = (alias.name.split(".") for alias in node.names)
            names.update(parts[1] for parts in modules if parts[0] == "resdepth" and parts[1:])
    return names


@cache
def library_modules(script):
    """Sorted names of every ``resdepth`` module that ``script`` imports, directly or
    through other modules of the library."""
    found, pending = set(), list(direct_imports(script))
    while pending:
        name = pending.pop()
        if name not in found:
            found.add(name)
            pending.extend(direct_imports(LIBRARY / f"{name}.py"))
    return sorted(found)
