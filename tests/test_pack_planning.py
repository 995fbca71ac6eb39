"""The pack planner (resdepth/packs.py) from the behaviour it promises: runs share a pack
exactly when they differ only in their scaling within one module family; a pack holds at
most max_members runs and gpu_mem_gb of estimated memory, each split starting afresh;
the resources a pack asks for follow its architecture's options."""

import copy

import pytest
import yaml
from conftest import REPO

from resdepth import cost, packs


def paper_config():
    return yaml.safe_load((REPO / "config" / "paper.yaml").read_text())


def paper_cell(**changes):
    cell = dict(dataset="cifar10", arch="conv", depth=100, scaling=0.5, seed=0, width=64)
    cell.update(lr=0.02, epochs=30, batch_size=128, **changes)
    return cell


#: A setting of a cell and another value of it: runs that differ in it train apart.
SETTINGS = {
    "dataset": "digits",
    "arch": "conv",
    "depth": 101,
    "width": 32,
    "lr": 0.03,
    "epochs": 31,
    "batch_size": 64,
    "seed": 1,
    "grad_clip": 1.0,
}


@pytest.mark.parametrize("setting", SETTINGS)
def test_runs_differing_in_any_shared_setting_never_share_a_pack(setting):
    base = paper_cell(arch="mlp")  # an MLP takes either data set, CIFAR-10 either arch
    other = {**base, setting: SETTINGS[setting], "scaling": 0.25}
    assert packs.pack_key(base) != packs.pack_key(other)
    config = paper_config()
    config["arch_options"]["mlp"] = {}
    plan = packs.plan_packs({"a": base, "b": other}, config)
    assert sorted(plan.values()) == [["a"], ["b"]]


def test_runs_differing_only_in_their_scaling_within_a_family_share_a_pack():
    plain = {f"lam{s}": paper_cell(scaling=s) for s in ("one", "inv_sqrt", "inv", 0.5, 0.01)}
    runs = {**plain, "bn": paper_cell(scaling="bn"), "skipinit": paper_cell(scaling="skipinit")}
    plan = packs.plan_packs(runs, paper_config())
    assert sorted(plan.values()) == sorted([list(plain), ["bn"], ["skipinit"]])


def sized_runs(count, depth=1000):
    """``count`` plain runs of one pack key and their (equal) estimated GPU bytes."""
    runs = {f"r{i}": paper_cell(depth=depth, scaling=0.5 + i / 100) for i in range(count)}
    size = cost.member_gpu_bytes(runs["r0"], {"stem_stride": 2})
    return runs, size


def packed_config():
    """The paper config with the packed backend: a pack's members are on the GPU at once."""
    config = paper_config()
    config["training"]["pack_backend"] = "packed"
    return config


@pytest.mark.parametrize("fit", [0.5, 1, 2])
def test_a_loop_pack_needs_room_for_one_member(fit):
    """The loop backend trains a pack's runs one after another, letting each go before it
    builds the next: a budget of one member holds any number, under one holds none."""
    runs, size = sized_runs(7)
    config = paper_config()
    assert config["training"]["pack_backend"] == "loop"
    config["training"]["packing"].update(max_members=16, gpu_mem_gb=(fit + 0.25) * size / 1e9)
    sizes = [len(members) for members in packs.plan_packs(runs, config).values()]
    assert sizes == ([1] * 7 if fit < 1 else [7])


def test_the_member_cap_and_the_budget_together():
    runs, size = sized_runs(7)
    config = packed_config()
    config["training"]["packing"].update(max_members=2, gpu_mem_gb=10 * size / 1e9)
    assert [len(m) for m in packs.plan_packs(runs, config).values()] == [2, 2, 2, 1]
    config["training"]["packing"].update(max_members=3, gpu_mem_gb=2.5 * size / 1e9)
    assert [len(m) for m in packs.plan_packs(runs, config).values()] == [2, 2, 2, 1]
    config["training"]["packing"].update(gpu_mem_gb=0.5 * size / 1e9)  # under one run
    assert [len(m) for m in packs.plan_packs(runs, config).values()] == [1] * 7


def test_the_budget_counts_each_member_with_its_architecture_options():
    """Stem stride 1 keeps 4x the feature map of stride 2: fewer runs fit a budget."""
    runs, size = sized_runs(4, depth=100)
    config = packed_config()
    config["training"]["packing"].update(max_members=16, gpu_mem_gb=4.5 * size / 1e9)
    assert [len(m) for m in packs.plan_packs(runs, config).values()] == [4]
    config["arch_options"]["conv"]["stem_stride"] = 1
    assert len(packs.plan_packs(runs, config)) > 1


def test_pack_resources_follow_the_architecture_options():
    """The scheduler must be asked for what the pack's own model costs: a stem stride
    of 1 has 4x the pixels per branch of stride 2 (runtime and CPU activations)."""
    config = paper_config()
    config["training"].update(device="cpu", gpu=False)
    cells = [paper_cell(scaling=s) for s in (0.5, 0.25)]
    strided = packs.pack_resources(cells, config)
    config["arch_options"]["conv"]["stem_stride"] = 1
    dense = packs.pack_resources(cells, config)
    assert dense["runtime"] > 3 * strided["runtime"] - 3 * cost.STARTUP_MIN
    assert dense["mem_mb"] - cost.HOST_BASE_MB > 3 * (strided["mem_mb"] - cost.HOST_BASE_MB)
    # The options of the pack's architecture, not another's.
    config["arch_options"]["mlp"] = {"activation": "tanh"}
    assert packs.pack_resources(cells, config) == dense


def test_a_retried_pack_asks_for_more_memory_and_the_same_runtime():
    config = copy.deepcopy(paper_config())
    cells = [paper_cell(scaling=s) for s in (0.5, 0.25)]
    first, second = (packs.pack_resources(cells, config, attempt) for attempt in (1, 2))
    assert second["mem_mb"] == 2 * first["mem_mb"]
    assert second["runtime"] == first["runtime"] and second["gpu"] == first["gpu"] == 1
