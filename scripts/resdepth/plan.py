"""What a config's training will cost, said before it starts: the plan summary that
every run and dry run of a config with GPU training jobs prints.

Torch-free (the Snakefile prints it while planning). Requested GPU time is what the
training jobs ask the scheduler for (``runtime``, ``packs.pack_resources``: the numbers
a cluster reserves); expected GPU time is the runs' FLOPs at the speed measured on a GPU
(``cost.expected_gpu_seconds``); peak memory is the largest job's request (host) and
estimate (GPU, ``cost.member_gpu_bytes`` of a pack's members as its backend holds them,
``cost.pack_bytes``).
"""

from dataclasses import dataclass

from resdepth import cost, packs


@dataclass
class Kind:
    """The training jobs of one depth: how many, and what they cost together."""

    depth: int
    jobs: int = 0
    runs: int = 0
    requested_hours: float = 0.0
    expected_hours: float = 0.0
    peak_host_gb: float = 0.0
    peak_gpu_gb: float = 0.0


def gpu_training_plan(config):
    """``[Kind, ...]`` by depth of the config's GPU training jobs; empty without any."""
    runs, planned = packs.training_packs(config)
    kinds = {}
    for members in planned.values():
        cells = [runs[run_id] for run_id in members]
        resources = packs.pack_resources(cells, config)
        if not resources["gpu"]:
            continue
        options = config["arch_options"].get(cells[0]["arch"], {})
        kind = kinds.setdefault(cells[0]["depth"], Kind(cells[0]["depth"]))
        kind.jobs += 1
        kind.runs += len(cells)
        kind.requested_hours += resources["runtime"] / 60
        seconds = sum(cost.expected_gpu_seconds(c, options, config.get("datasets")) for c in cells)
        kind.expected_hours += seconds / 3600
        kind.peak_host_gb = max(kind.peak_host_gb, resources["mem_mb"] / 1000)
        member_bytes = [cost.member_gpu_bytes(c, options, config.get("datasets")) for c in cells]
        gpu_bytes = cost.pack_bytes(member_bytes, config["training"])
        kind.peak_gpu_gb = max(kind.peak_gpu_gb, gpu_bytes / 1e9)
    return [kinds[depth] for depth in sorted(kinds)]


def totals(kinds):
    """``Kind`` summing ``kinds`` (peaks: the largest), depth 0."""
    return Kind(
        depth=0,
        jobs=sum(k.jobs for k in kinds),
        runs=sum(k.runs for k in kinds),
        requested_hours=sum(k.requested_hours for k in kinds),
        expected_hours=sum(k.expected_hours for k in kinds),
        peak_host_gb=max(k.peak_host_gb for k in kinds),
        peak_gpu_gb=max(k.peak_gpu_gb for k in kinds),
    )


def summary(config):
    """The plan summary as text, or None when the config trains nothing on a GPU."""
    kinds = gpu_training_plan(config)
    if not kinds:
        return None
    total = totals(kinds)
    header = f"{'training jobs':<16}{'jobs':>6}{'runs':>6}{'GPU-h asked':>13}{'GPU-h expected':>16}"
    header += f"{'peak host GB':>14}{'peak GPU GB':>13}"
    lines = ["Plan of the GPU training jobs (resdepth/plan.py):", header]
    for label, k in [*((f"depth {k.depth}", k) for k in kinds), ("total", total)]:
        lines.append(
            f"{label:<16}{k.jobs:>6}{k.runs:>6}{k.requested_hours:>13.1f}"
            f"{k.expected_hours:>16.1f}{k.peak_host_gb:>14.1f}{k.peak_gpu_gb:>13.1f}"
        )
    lines += [
        "GPU-h asked: the jobs' `runtime` requests (one GPU each), what a scheduler reserves;",
        "  cost.pack_resources assumes a slower speed than measured, plus start-up, so that",
        "  no job is killed at its limit (a killed job resumes from its checkpoint).",
        f"GPU-h expected: the runs' FLOPs at {cost.MEASURED_GPU_FLOPS / 1e12:.1f} TFLOP/s, "
        f"measured in {cost.MEASURED_GPU_SOURCE};",
        "  diverged runs stop early, GC measurements and start-up add a few %.",
        "peak GB: the largest job's host memory request (mem_mb) and estimated GPU memory.",
    ]
    return "\n".join(lines)
