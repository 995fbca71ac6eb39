import re
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from resdepth import cost, models

MODELS = [
    ("mlp", (8, 8), {}),
    ("conv", (3, 16, 16), {"stem_stride": 1}),
    ("conv", (3, 16, 16), {"stem_stride": 2}),
    ("conv", (3, 16, 16), {"stem_stride": 4}),
]


@pytest.mark.parametrize("arch, shape, options", MODELS)
@pytest.mark.parametrize("scaling", ["inv", "bn"])
def test_flops_match_torch_flop_counter(arch, shape, options, scaling):
    model = models.build_model(arch, shape, 10, 8, 3, scaling, **options)
    x = torch.randn(4, *shape)
    with FlopCounterMode(display=False) as forward:
        logits = model(x)
    with FlopCounterMode(display=False) as backward:
        logits.sum().backward()
    per_image_forward = forward.get_total_flops() / 4
    per_image_train = per_image_forward + backward.get_total_flops() / 4
    assert cost.forward_flops(arch, shape, 10, 8, 3, **options) == per_image_forward
    assert cost.train_flops(arch, shape, 10, 8, 3, **options) == per_image_train


@pytest.mark.parametrize("arch, shape, options", MODELS)
@pytest.mark.parametrize("scaling", ["one", "bn", "skipinit"])
def test_parameter_count_matches_the_model(arch, shape, options, scaling):
    model = models.build_model(arch, shape, 10, 8, 3, scaling, **options)
    expected = sum(p.numel() for p in model.parameters())
    assert cost.parameter_count(arch, shape, 10, 8, 3, scaling, **options) == expected


def paper_cell(depth, scaling="inv"):
    return dict(dataset="cifar10", arch="conv", depth=depth, scaling=scaling, seed=0)


def resources(depth, device="cuda", scaling="inv"):
    cell = {**paper_cell(depth, scaling), "width": 64, "epochs": 30, "batch_size": 128}
    return cost.pack_resources([cell], {"device": device, "threads": 2}, {"stem_stride": 2})


def test_resources_grow_with_depth_and_ask_for_a_gpu_only_on_cuda():
    shallow, deep = resources(10), resources(1000)
    assert deep["runtime"] > 10 * shallow["runtime"] and deep["mem_mb"] > shallow["mem_mb"]
    assert shallow["gpu"] == deep["gpu"] == 1
    assert resources(10, device="auto")["gpu"] == resources(10, device="cpu")["gpu"] == 0


def test_cpu_jobs_reserve_their_activations():
    """On CPU a batch's activations live in host memory; BatchNorm keeps more of them."""
    gpu, cpu, cpu_bn = resources(100), resources(100, "cpu"), resources(100, "cpu", "bn")
    assert cpu["mem_mb"] > gpu["mem_mb"] + 1000
    assert cpu_bn["mem_mb"] > cpu["mem_mb"]


H200_LOG = Path(__file__).parents[1] / "docs/measurements/h200/cifar_throughput.log"


def measured_fp32_rates():
    """{depth: images/s} of our fp32 path (what paper.yaml trains) in the committed log."""
    rates, depth = {}, None
    for line in H200_LOG.read_text().splitlines():
        if match := re.match(r"depth (\d+), width 64, batch 128", line):
            depth = int(match.group(1))
        elif match := re.match(r"\s+ours fp32\s+(\d+) img/s", line):
            rates[depth] = int(match.group(1))
    return rates


def test_gpu_runtime_estimate_covers_the_measured_speed_with_a_margin():
    """A job whose runtime is too short is killed at its time limit on a cluster."""
    rates = measured_fp32_rates()
    assert sorted(rates) == [100, 1000]
    data = cost.DATASETS["cifar10"]
    for depth, rate in rates.items():
        # Evaluation is a forward pass: a third of a training image's work.
        seconds_per_epoch = (data["n_train"] + data["n_test"] / 3) / rate
        measured_minutes = 30 * seconds_per_epoch / 60
        estimate = resources(depth)["runtime"] - cost.STARTUP_MIN
        assert estimate >= 1.1 * measured_minutes, (depth, estimate, measured_minutes)


def test_cost_of_a_deep_tower_is_computed_in_constant_memory():
    """Planning asks for every job's resources: at the schema's largest depth that must
    not build a list per layer (a depth of 10^9 once grew past 23 GB while planning)."""
    import tracemalloc

    depth = 100_000
    tracemalloc.start()
    deep = resources(depth, device="cpu")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 100_000, peak
    shape = cost.DATASETS["cifar10"]["input_shape"]
    one_branch = cost.train_flops("conv", shape, 10, 64, 2) - cost.train_flops(
        "conv", shape, 10, 64, 1
    )
    assert (
        cost.train_flops("conv", shape, 10, 64, depth)
        == cost.train_flops("conv", shape, 10, 64, 1) + (depth - 1) * one_branch
    )
    assert deep["mem_mb"] > resources(1000, device="cpu")["mem_mb"]


TRANSFORMER = dict(vocab_size=12, heads=2, activation="gelu", init="fan_in", context=9)


@pytest.mark.parametrize("scaling", ["one", "bn", "skipinit"])
def test_transformer_flops_and_parameters_match_the_model(scaling):
    """Every matmul of a sequence's forward and backward (q/k/v, the causal T×T logits and
    mixing, projections, MLP, the head at the last position), and every parameter."""
    shape = (7,)
    model = models.build_model("transformer", shape, 5, 8, 3, scaling, **TRANSFORMER)
    ids = torch.randint(12, (4, *shape))
    with FlopCounterMode(display=False) as forward:
        logits = model(ids)
    with FlopCounterMode(display=False) as backward:
        logits.sum().backward()
    per_sequence_forward = forward.get_total_flops() / 4
    per_sequence_train = per_sequence_forward + backward.get_total_flops() / 4
    assert cost.forward_flops("transformer", shape, 5, 8, 3, **TRANSFORMER) == per_sequence_forward
    assert cost.train_flops("transformer", shape, 5, 8, 3, **TRANSFORMER) == per_sequence_train
    expected = sum(p.numel() for p in model.parameters())
    assert cost.parameter_count("transformer", shape, 5, 8, 3, scaling, **TRANSFORMER) == expected


def test_recall_sizes_come_from_the_config():
    datasets = {"recall": dict(pairs=4, keys=8, values=6, n_train=100, n_test=10, split_seed=0)}
    info = cost.dataset_info("recall", datasets)
    assert info["input_shape"] == (9,) and info["num_classes"] == 6 and info["vocab_size"] == 14
    cell = dict(dataset="recall", arch="transformer", depth=2, scaling="inv", seed=0)
    cell.update(width=8, epochs=1, batch_size=10)
    training = {"device": "cpu", "threads": 1}
    small = cost.pack_resources([cell], training, TRANSFORMER, datasets)
    bigger = {"recall": {**datasets["recall"], "n_train": 1_000_000}}
    assert cost.pack_resources([cell], training, TRANSFORMER, bigger)["runtime"] > small["runtime"]
    with pytest.raises(ValueError, match="datasets.recall"):
        cost.dataset_info("recall", {})


@pytest.mark.parametrize("order", [1, 4, 6])
def test_transformer_taylor_flops_match_the_expansion(order):
    """The study estimates of paper.yaml rest on this count: every matmul of
    expansion.taylor_terms on a transformer tower, the bilinear attention products too."""
    from resdepth import expansion

    model = models.build_model("transformer", (7,), 5, 8, 3, "one", **TRANSFORMER).double()
    x0 = model.stem(torch.randint(12, (4, 7)))
    with FlopCounterMode(display=False) as counted:
        expansion.taylor_terms(model.eval(), x0, order)
    expected = cost.taylor_flops((7,), 5, 8, 3, order)
    assert counted.get_total_flops() / 4 == expected


def test_transformer_study_flops_add_up_their_cells():
    datasets = {"recall": dict(pairs=3, keys=8, values=6, n_train=10, n_test=4, split_seed=0)}
    study = dict(dataset="recall", width=8, norm=["pre_ln", "none"], batch_size=4)
    studies = {
        "init_norms": {**study, "depth": [1, 3], "scaling": ["one", "inv"], "seed": [0, 1, 2]},
        "radius": {**study, "depth": [3], "seed": [0], "order": 4},
        "truncation": {**study, "depth": 3, "seeds": [0], "orders": [1, 4], "lambda_steps": 5},
    }
    flops = cost.transformer_study_flops(studies, datasets, TRANSFORMER)
    forward = lambda depth: cost.forward_flops("transformer", (7,), 6, 8, depth)  # noqa: E731
    assert flops["init_norms"] == 2 * 4 * 2 * 3 * (forward(1) + forward(3))
    assert flops["radius"] == 2 * 4 * cost.taylor_flops((7,), 6, 8, 3, 4)
    assert flops["truncation"] == 2 * 4 * (cost.taylor_flops((7,), 6, 8, 3, 4) + 5 * forward(3))
