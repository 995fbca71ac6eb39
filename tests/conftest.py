"""Shared fixtures: the digits data set, torch on one thread, a watch on the optimiser,
and a temporary copy of the workflow that real snakemake runs in."""

import contextlib
import copy
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from runtime_only import runtime_only_env

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_PARTS = ("Snakefile", "workflow", "config", ".test", "scripts", "envs")
#: The smoke-test config every pipeline test runs (a minute or two on a laptop).
TINY_CONFIG = ".test/config/config.yaml"


#: The training settings the unit tests share (the config's `training` section, trimmed).
TRAIN_SETTINGS = {
    "optimizer": "sgd",
    "momentum": 0.9,
    "nesterov": True,
    "weight_decay": 5e-4,
    "warmup_epochs": 1,
    "eval_batch_size": 1024,
}


@pytest.fixture(autouse=True)
def close_figures():
    """Close the figures a test left open, so a test that checks that a figure was closed
    (tests/test_plots.py) sees only its own."""
    yield
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close("all")


@pytest.fixture(scope="session")
def digits():
    """The digits data set as the default config prepares it (read-only: tests share it)."""
    from resdepth import data

    return data.Prepared(num_classes=10, **data.digits_tensors(0.25, split_seed=0))


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module's tests (bit-for-bit comparisons between runs),
    restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@contextlib.contextmanager
def optimizer_hooks(before=None, after=None):
    """Call ``before(optimizer)`` and ``after(optimizer)`` around every optimiser step taken
    inside the block: tests watch what the training loop does, not how it is written."""
    from torch.optim.optimizer import (
        register_optimizer_step_post_hook,
        register_optimizer_step_pre_hook,
    )

    handles = []
    if before:
        handles.append(register_optimizer_step_pre_hook(lambda opt, *_: before(opt)))
    if after:
        handles.append(register_optimizer_step_post_hook(lambda opt, *_: after(opt)))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def stored_scales(model, scaling, depth):
    """The tower's λ_l, checked to be ``branch_scale`` rounded to the (at least float32)
    dtype the model stores it in: the values a float64 reference must use."""
    import torch

    from resdepth import scalings

    stored = model.tower.scales().detach().clone()
    assert torch.finfo(stored.dtype).eps <= torch.finfo(torch.float32).eps
    if scaling != "skipinit":
        lam = torch.full_like(stored, scalings.branch_scale(scaling, depth))
        assert torch.equal(stored, lam)
    return stored.double()


def inputs(n=40, seed=1):
    """``n`` seeded random inputs of 4 features and labels of 3 classes, for tiny towers."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


def default_config():
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def tiny_config():
    """The smoke-test config (.test/config/config.yaml): two shallow depths, two
    scalings, one seed, a 3-λ sweep whose `inv` run is the grid's."""
    return yaml.safe_load((REPO / TINY_CONFIG).read_text())


def training_jobs(jobs):
    """The planned training jobs among ``jobs`` (``{rule: count}``): one rule per pack of
    runs, ``train_<pack id>`` (workflow/rules/train.smk)."""
    return {rule: n for rule, n in jobs.items() if rule.startswith("train_")}


def pack_of(config, run_id):
    """The id of the pack that trains ``run_id``: it names the job's checkpoint and log."""
    from resdepth import packs

    (pack_id,) = [p for p, runs in packs.training_packs(config)[1].items() if run_id in runs]
    return pack_id


class Workflow:
    """A copy of the repository's workflow in ``root``, driven by real snakemake."""

    def __init__(self, root, env=None):
        self.root = root
        self.env = env  # the child processes' environment (None: this one's)
        for part in WORKFLOW_PARTS:
            source = REPO / part
            if source.is_dir():
                shutil.copytree(source, root / part, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(source, root / part)

    def write_config(self, config, name="test.yaml"):
        path = self.root / "config" / name
        path.write_text(yaml.safe_dump(copy.deepcopy(config), sort_keys=False))
        return path

    def run(self, *args, config=None, check=True, timeout=600):
        cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
        if config is not None:
            cmd += ["--configfile", str(self.write_config(config))]
        result = subprocess.run(
            cmd, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"snakemake {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
            )
        return result

    def planned_jobs(self, config=None, *args):
        """``{rule: count}`` of the jobs a dry run would execute (empty when up to date)."""
        result = self.run("--dry-run", *args, config=config)
        text = result.stdout + result.stderr
        stats = text.split("Job stats:")[-1] if "Job stats:" in text else ""
        counts = {}
        for line in stats.splitlines():
            match = re.fullmatch(r"(\w+)\s+(\d+)", line.strip())
            if match and match.group(1) != "total":
                counts[match.group(1)] = int(match.group(2))
        return counts

    def path(self, relative):
        return self.root / relative

    def copy_to(self, root):
        """A fresh workflow in ``root`` with this one's results and snakemake's records:
        a run there leaves this one untouched."""
        copy = Workflow(root, self.env)
        for part in ("results", ".snakemake"):
            shutil.copytree(self.root / part, root / part, symlinks=True)
        return copy


@pytest.fixture
def workflow(tmp_path):
    return Workflow(tmp_path)


@pytest.fixture(scope="session")
def finished(tmp_path_factory):
    """The tiny config, run once end to end on what the runtime install can import (see
    runtime_only.py); shared by every test that only reads it."""
    env = runtime_only_env(tmp_path_factory.mktemp("runtime-only"))
    wf = Workflow(tmp_path_factory.mktemp("tiny"), env)
    wf.run("--configfile", TINY_CONFIG)  # the README's smoke test
    return wf
