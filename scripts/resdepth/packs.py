"""Packs: training runs that one job trains, in one process (train_job.train_pack).

Torch-free, because the Snakefile plans one training job per pack.

Runs may share a pack when they differ only in their residual scaling: same data set,
architecture, depth, width, learning rate, epochs, batch size, seed and gradient
clipping, and the same module family (``plain``: every fixed λ, named or not; ``bn``;
``skipinit``). The seed is part of the key and so is the depth, so adding a seed or a
depth to the config adds new packs and never changes an existing one; the λ sweep's
unclipped runs join the grid's plain pack of their depth and seed. Members keep the
config's order (the grid's, then the sweep's) and fill a pack up to
``training.packing.max_members`` runs and ``gpu_mem_gb`` of estimated GPU memory
(``cost.member_gpu_bytes`` of each run, together as its backend holds them:
``cost.pack_bytes``), then start the next (``-p1``, ...).

Packing only changes how runs are executed: a pack's members train one after another,
each with its own model, optimiser, seed and data stream, and end bit for bit as they would
alone.
With ``training.packing.enabled: false`` every run is a pack of one named by its run id.
"""

import re

from resdepth import cost, grid
from resdepth.scalings import family


def pack_key(cell):
    """What members of one pack have in common: a readable name of it."""
    c = cell
    clip = f"-clip{c['grad_clip']:g}" if c.get("grad_clip") else ""  # as in the run id
    return (
        f"{c['dataset']}-{c['arch']}-n{c['depth']}-{family(c['scaling'])}"
        f"-w{c['width']}-lr{c['lr']:g}-e{c['epochs']}-b{c['batch_size']}-s{c['seed']}{clip}"
    )


def plan_packs(runs, config):
    """``{pack_id: [run_id, ...]}`` covering every run of ``runs`` (``{run_id: cell}``,
    as ``grid.training_runs`` gives it) exactly once."""
    packing = config["training"].get("packing") or {"enabled": False}
    if not packing["enabled"]:
        return {run_id: [run_id] for run_id in runs}
    budget = packing["gpu_mem_gb"] * 1e9
    by_key = {}
    for run_id, cell in runs.items():
        by_key.setdefault(pack_key(cell), []).append(run_id)
    packs = {}
    for key, members in by_key.items():
        chunks, used = [[]], []  # the runs of each pack, the GPU bytes of the last one's
        for run_id in members:
            cell = runs[run_id]
            options = config["arch_options"].get(cell["arch"], {})
            size = cost.member_gpu_bytes(cell, options, config.get("datasets"))
            together = cost.pack_bytes([*used, size], config["training"])
            if chunks[-1] and (len(chunks[-1]) == packing["max_members"] or together > budget):
                chunks.append([])
                used = []
            chunks[-1].append(run_id)
            used.append(size)
        packs.update({f"{key}-p{i}": chunk for i, chunk in enumerate(chunks)})
    return packs


def rule_name(pack_id):
    """The name of a pack's training rule: ``train_`` and the pack id as an identifier."""
    return "train_" + re.sub(r"\W", "_", pack_id)


def pack_resources(cells, config, attempt=1):
    """Scheduler resources of the job that trains ``cells`` (a pack): ``runtime`` (min)
    and ``mem_mb`` estimated from their FLOPs and memory (both grow with depth and add up
    over the members, cost.pack_resources), and ``gpu`` (1 when the config asks for one),
    so ``--resources gpu=K`` never oversubscribes a machine's GPUs.

    Memory also grows with Snakemake's ``attempt``: a job retried after running out of
    memory gets more. Runtime does not: a job stopped at its time limit resumes from its
    checkpoint.
    """
    arch_options = config["arch_options"].get(cells[0]["arch"], {})
    resources = cost.pack_resources(cells, config["training"], arch_options, config.get("datasets"))
    return {**resources, "mem_mb": attempt * resources["mem_mb"]}


def training_packs(config):
    """The config's training runs and their packs: (``{run_id: cell}``, ``{pack_id: [...]}``)."""
    runs = grid.training_runs(config)
    packs = plan_packs(runs, config)
    names = [rule_name(pack_id) for pack_id in packs]
    if len(set(names)) != len(names):  # two ids that differ only in punctuation
        raise ValueError("two packs would get the same training rule name")
    return runs, packs
