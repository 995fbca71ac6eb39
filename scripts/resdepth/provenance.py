"""What a reader needs to trust a training result: the code, libraries and settings that made it.

The train rule stores it in every metrics.json under ``provenance`` and runs.csv carries it
as ``provenance.*`` columns (docs/file-contracts.md). The run id names the grid cell only;
the ``training`` section is a job param, so a changed result-defining setting retrains the
run, and ``provenance.training`` says which settings the stored result was trained with.
"""

import hashlib
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy
import torch

from resdepth import settings

#: The folder holding scripts/resdepth/: a git checkout's top level, when it is one.
SOURCE_ROOT = Path(__file__).resolve().parents[2]


def _git(*args):
    return subprocess.run(
        ["git", "-C", str(SOURCE_ROOT), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def code_digest():
    """sha256 of the source of every loaded ``resdepth`` module: the code computing the run."""
    digest = hashlib.sha256()
    for name in sorted(m for m in sys.modules if m.split(".")[0] == "resdepth"):
        if getattr(sys.modules[name], "__file__", None):
            digest.update(Path(sys.modules[name].__file__).read_bytes())
    return digest.hexdigest()


def code_version():
    """The git commit this code was checked out at ("+dirty" when tracked files differ from
    it, other than the execution-only settings.EXECUTION_FILES: a site's edits to a
    profile); else the installed package's version; else None (a copy of the source)."""
    try:
        if Path(_git("rev-parse", "--show-toplevel")).resolve() == SOURCE_ROOT:
            execution = [f":(top,exclude){path}" for path in settings.EXECUTION_FILES]
            dirty = _git("status", "--porcelain", "--untracked-files=no", "--", ":/", *execution)
            return _git("rev-parse", "HEAD") + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        pass  # no git, or not inside a checkout
    try:
        return metadata.version("resdepth")
    except metadata.PackageNotFoundError:
        return None


def provenance(training, arch_options, augment):
    """The provenance record of a training run trained with these settings (the config's
    full ``training`` section, the architecture's options, data augmentation on or off)."""
    cudnn = torch.backends.cudnn
    return {
        "code_version": code_version(),
        "code_sha256": code_digest(),  # the loaded resdepth modules' source, exactly
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,  # null: a CPU build of torch
        "cudnn": cudnn.version() if cudnn.is_available() else None,
        "numpy": numpy.__version__,
        "training": training,
        "arch_options": arch_options,
        "augment": augment,
    }
