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


# The cost model against measurements: what real jobs and torch itself used, not the
# formulas restated.

CPU_BENCHMARKS = Path(__file__).parents[1] / "docs/measurements/cpu/default_train_benchmarks.tsv"


def measured_train_jobs():
    """``{pack_id: (seconds, peak RSS MB)}`` of the default config's training jobs, from
    Snakemake's benchmark files of a real run (main at e6d3e84, 2 cores, 7 sessions
    sharing them: times are upper ends)."""
    rows = [line.split("\t") for line in CPU_BENCHMARKS.read_text().splitlines()]
    header, rows = rows[0], rows[1:]
    s, rss = header.index("s"), header.index("max_rss")
    return {row[0]: (float(row[s]), float(row[rss])) for row in rows}


def test_cpu_pack_jobs_ask_for_at_least_what_they_used():
    """Every training job of the default config gets the memory and time it was
    measured to need (a job over its mem_mb or runtime is killed on a cluster)."""
    from conftest import default_config

    from resdepth import packs

    config = default_config()
    runs, plan = packs.training_packs(config)
    measured = measured_train_jobs()
    assert set(measured) == set(plan)
    for pack_id, (seconds, peak_mb) in measured.items():
        asked = packs.pack_resources([runs[r] for r in plan[pack_id]], config)
        assert asked["mem_mb"] >= 1.5 * peak_mb, pack_id
        assert asked["runtime"] * 60 >= 2 * seconds, pack_id
        assert asked["gpu"] == 0


def measured_gpu_peaks():
    """{depth: peak GiB} of one fp32 paper run's training steps in the committed log."""
    peaks, depth, label = {}, None, None
    for line in H200_LOG.read_text().splitlines():
        if match := re.match(r"depth (\d+), width 64, batch 128", line):
            depth = int(match.group(1))
        elif match := re.match(r"\s+(ours \S+|reference)\s", line):
            label = match.group(1)
        elif (match := re.match(r"\s+peak GPU memory ([\d.]+) GiB", line)) and label == "ours fp32":
            peaks[depth] = float(match.group(1)) * 2**30
    return peaks


def test_gpu_memory_estimate_covers_the_measured_peak_without_doubling_it():
    """The pack planner fills a GPU up to training.packing.gpu_mem_gb with these
    estimates: under the measured peak, packs run out of memory; far above it, they
    hold fewer members than fit."""
    peaks = measured_gpu_peaks()
    assert sorted(peaks) == [100, 1000]
    for depth, peak in peaks.items():
        cell = {**paper_cell(depth), "width": 64, "batch_size": 128}
        estimate = cost.member_gpu_bytes(cell, {"stem_stride": 2})
        assert peak <= estimate <= 2.5 * peak, (depth, estimate / peak)


def saved_activation_bytes(model, x):
    """Bytes of the distinct tensors autograd saves for backward in one training step."""
    storages = {}

    def pack(tensor):
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(x).sum().backward()
    return sum(storages.values())


@pytest.mark.parametrize("arch, shape, options", MODELS[:3])
@pytest.mark.parametrize("scaling", ["inv", "bn", "skipinit"])
def test_activation_estimate_covers_what_autograd_saves(arch, shape, options, scaling):
    """Per image and branch, measured at two depths so the stem and head drop out."""
    torch.manual_seed(0)
    batch, width = 16, 8
    saved = {}
    for depth in (2, 6):
        model = models.build_model(arch, shape, 10, width, depth, scaling, **options).train()
        saved[depth] = saved_activation_bytes(model, torch.randn(batch, *shape))
    per_image_branch = (saved[6] - saved[2]) / 4 / batch
    estimate = cost.activation_bytes(arch, shape, width, 1, scaling, **options)
    assert per_image_branch <= estimate <= 2.5 * per_image_branch, estimate / per_image_branch


def test_host_memory_holds_the_weights_copies_torch_allocates():
    """Weights, gradients and SGD momentum are three full copies (a checkpoint's state
    the fourth): measured as the process's resident memory growth while a wide MLP,
    whose weights dwarf everything else, takes SGD steps."""
    psutil = pytest.importorskip("psutil")
    width, depth = 1024, 8
    cell = dict(dataset="digits", arch="mlp", depth=depth, scaling="inv", seed=0)
    cell.update(width=width, epochs=1, batch_size=2)
    process = psutil.Process()
    before = process.memory_info().rss
    model = models.build_model("mlp", (8, 8), 10, width, depth, "inv")
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    for _ in range(2):
        optimizer.zero_grad(set_to_none=False)
        model(torch.randn(2, 8, 8)).sum().backward()
        optimizer.step()
    grown = process.memory_info().rss - before
    weights = 4 * sum(p.numel() for p in model.parameters())
    assert grown >= 2.5 * weights  # three copies were made (the measurement is sound)
    alone = cost.pack_resources([cell], {"device": "cpu", "threads": 1})
    empty = cost.pack_resources([{**cell, "width": 1, "depth": 1}], {"device": "cpu", "threads": 1})
    asked_for_weights = (alone["mem_mb"] - empty["mem_mb"]) * 1e6
    assert asked_for_weights >= grown


PACK_MEMORY = Path(__file__).parents[1] / "docs/measurements/cpu/pack_memory.tsv"


def test_pack_memory_follows_the_backend_as_measured():
    """Real training jobs (bench/bench_pack_memory.py): the loop backend's memory is one
    run's whatever the pack's size (each run is let go before the next is built), the
    packed backend's grows with every run (five weight copies each). The host memory a
    pack asks for covers each measured peak without asking for 2.5 times it."""
    rows = [line.split("\t") for line in PACK_MEMORY.read_text().splitlines()]
    header, rows = rows[0], rows[1:]
    assert len(rows) == 8
    for row in rows:
        measured = dict(zip(header, row, strict=True))
        base = dict(dataset="digits", arch="mlp", depth=int(measured["depth"]), seed=0)
        base.update(width=int(measured["width"]), lr=0.01, epochs=1)
        base["batch_size"] = int(measured["batch_size"])
        cells = [{**base, "scaling": 0.1 * (k + 1)} for k in range(int(measured["members"]))]
        training = {"device": "cpu", "threads": 1, "pack_backend": measured["backend"]}
        asked_mb = cost.pack_resources(cells, training)["mem_mb"] - cost.HOST_BASE_MB
        peak_mb = float(measured["peak_growth_mb"])
        assert peak_mb <= asked_mb <= 2.5 * peak_mb, (measured, asked_mb)


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
