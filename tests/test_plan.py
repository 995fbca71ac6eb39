"""The plan summary (resdepth/plan.py) and config/paper.yaml's comments that quote it."""

import re

import pytest
import yaml
from conftest import REPO, default_config

from resdepth import cost, packs, plan

PAPER = REPO / "config" / "paper.yaml"


def paper_config():
    return yaml.safe_load(PAPER.read_text())


def test_plan_adds_up_the_training_jobs_requests_and_flops():
    config = paper_config()
    runs, planned = packs.training_packs(config)
    kinds = plan.gpu_training_plan(config)
    total = plan.totals(kinds)
    assert [k.depth for k in kinds] == sorted(set(config["grid"]["depth"]))
    assert (total.jobs, total.runs) == (len(planned), len(runs))
    requested = [packs.pack_resources([runs[r] for r in m], config) for m in planned.values()]
    assert total.requested_hours == pytest.approx(sum(r["runtime"] for r in requested) / 60)
    options = config["arch_options"]["conv"]
    flops = sum(cost.run_flops(cell, options) for cell in runs.values())
    assert total.expected_hours == pytest.approx(flops / cost.MEASURED_GPU_FLOPS / 3600)
    assert total.peak_host_gb == max(r["mem_mb"] for r in requested) / 1000


def test_a_config_without_gpu_jobs_has_no_plan():
    assert plan.summary(default_config()) is None


def test_paper_yaml_comments_quote_its_plan():
    """The header's budget is the one the pipeline prints, not a number typed once."""
    total = plan.totals(plan.gpu_training_plan(paper_config()))
    header = " ".join(line.lstrip("# ") for line in PAPER.read_text().splitlines())
    quoted = {
        "jobs": r"trained in (\d+) GPU jobs",
        "requested": r"ask for ([\d.]+) GPU-hours",
        "expected": r"expected to take ~(\d+)",
        "flops": r"at the ([\d.]+) TFLOP/s",
        "host": r"asks for ([\d.]+) GB of host memory",
        "gpu": r"needs ~(\d+) GB of GPU memory",
    }
    numbers = {name: float(re.search(p, header).group(1)) for name, p in quoted.items()}
    assert numbers == {
        "jobs": total.jobs,
        "requested": round(total.requested_hours, 1),
        "expected": round(total.expected_hours),
        "flops": round(cost.MEASURED_GPU_FLOPS / 1e12, 1),
        "host": round(total.peak_host_gb, 1),
        "gpu": round(total.peak_gpu_gb, -1),
    }
