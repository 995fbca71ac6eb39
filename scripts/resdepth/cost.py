"""What a training job costs: FLOPs per image, memory, and the resources a scheduler needs.

Torch-free, because the Snakefile asks it for every job's ``runtime`` and ``mem_mb``
while planning the DAG. The FLOP counts are exact for the matmuls and convolutions
(what ``torch.utils.flop_counter`` counts; a test checks they agree) and also give the
benchmark its model FLOP utilisation.
"""

import math

#: What planning needs to know of each data set before it is prepared: split sizes,
#: input shape, classes, and bytes per stored value (CIFAR-10 stays uint8).
DATASETS = {
    "digits": dict(n_train=1347, n_test=450, input_shape=(8, 8), num_classes=10, value_bytes=4),
    "cifar10": dict(
        n_train=50_000, n_test=10_000, input_shape=(3, 32, 32), num_classes=10, value_bytes=1
    ),
}

#: Assumed speeds for runtime estimates. Deliberately slow: a job that overruns its
#: runtime is killed by the scheduler (and resumes from its checkpoint on a retry), one
#: that finishes early only wasted part of a reservation. Two terms, added up: the FLOPs
#: at a sustained rate (GPU: 5 % of an H100's bf16 dense peak; CPU: fp32 per thread), and
#: a fixed time per residual branch and step to launch its kernels (Python, dispatcher,
#: autograd). On a GPU at width 64 the launches dominate: an H200 took 0.57-0.71 ms per
#: branch and step of 128 images, fp32 (docs/measurements/h200/cifar_throughput.log;
#: tests/test_cost.py checks the estimate against that log).
SUSTAINED_FLOPS = {"gpu": 50e12, "cpu_thread": 5e9}
BRANCH_STEP_OVERHEAD_S = {"gpu": 7e-4, "cpu_thread": 1e-3}
STARTUP_MIN = 3  # interpreter, torch/CUDA start, data load, cudnn autotuning
HOST_BASE_MB = 1500  # torch (+ CUDA context) before any tensor


def _layers(arch, input_shape, num_classes, width, depth, stem_stride=1):
    """``(forward FLOPs per image, input gradient needed?, count)`` per kind of matmul/conv
    layer: a tower's branches are ``depth`` copies of one, so the cost is O(1) in depth."""
    if arch == "mlp":
        stem = 2 * math.prod(input_shape) * width
        branch = 2 * width * width
    elif arch == "conv":
        channels, height, width_px = input_shape
        pixels = (height // stem_stride) * (width_px // stem_stride)
        kernel = stem_stride + 2  # see models.conv_resnet
        stem = 2 * kernel * kernel * channels * width * pixels
        branch = 2 * 9 * width * width * pixels
    else:
        raise ValueError(f"no cost model for arch {arch!r}")
    head = 2 * width * num_classes
    # The stem's input is data: its backward computes the weight gradient only. Every
    # branch has two layers.
    return [(stem, False, 1), (branch, True, 2 * depth), (head, True, 1)]


def forward_flops(arch, input_shape, num_classes, width, depth, **arch_options):
    """Matmul/conv FLOPs of one image's forward pass (1 multiply-add = 2 FLOPs)."""
    layers = _layers(arch, input_shape, num_classes, width, depth, **arch_options)
    return sum(f * count for f, _, count in layers)


def train_flops(arch, input_shape, num_classes, width, depth, **arch_options):
    """FLOPs of one image's forward + backward: backward is one product for the weight
    gradient and, except at the stem, one for the input gradient."""
    layers = _layers(arch, input_shape, num_classes, width, depth, **arch_options)
    return sum(f * (3 if input_grad else 2) * count for f, input_grad, count in layers)


def parameter_count(arch, input_shape, num_classes, width, depth, scaling, stem_stride=1):
    """Number of trainable parameters of ``models.build_model`` with these settings."""
    batchnorm = scaling == "bn"
    if arch == "mlp":
        stem = math.prod(input_shape) * width + width
        linear = width * width + (0 if batchnorm else width)
    elif arch == "conv":
        stem = (stem_stride + 2) ** 2 * input_shape[0] * width + width
        linear = 9 * width * width + (0 if batchnorm else width)
    else:
        raise ValueError(f"no cost model for arch {arch!r}")
    branch = 2 * linear + (2 * 2 * width if batchnorm else 0)  # BatchNorm: weight and bias
    learned_scales = depth if scaling == "skipinit" else 0
    return stem + depth * branch + learned_scales + width * num_classes + num_classes


def activation_bytes(arch, input_shape, width, depth, scaling, stem_stride=1):
    """Upper estimate of the activation memory of one image in training (fp32).

    Per branch autograd keeps two feature maps (three for skipinit, four with BatchNorm:
    measured with saved-tensor hooks); two more cover the transient tensors of a step.
    """
    if arch == "mlp":
        elements = width
    else:
        elements = width * (input_shape[1] // stem_stride) * (input_shape[2] // stem_stride)
    saved = {"bn": 4, "skipinit": 3}.get(scaling, 2)
    return 4 * elements * (saved + 2) * depth


def member_gpu_bytes(cell, arch_options=None):
    """Estimated GPU memory of one run in training (fp32): a batch's activations and four
    copies of the weights (weights, gradients, momentum, a spare). The pack planner's
    budget adds these up over a pack's members."""
    dataset = DATASETS[cell["dataset"]]
    shape, options = dataset["input_shape"], arch_options or {}
    model = (cell["arch"], shape, dataset["num_classes"], cell["width"], cell["depth"])
    activations = activation_bytes(
        cell["arch"], shape, cell["width"], cell["depth"], cell["scaling"], **options
    )
    return cell["batch_size"] * activations + 4 * 4 * parameter_count(
        *model, cell["scaling"], **options
    )


def pack_bytes(member_bytes, training):
    """Memory of a pack's members together, each needing ``member_bytes`` alone.

    ``pack_backend: packed`` steps every member at once: their sum. The loop backend
    (train_job.train_pack) trains them one after another and lets each run go before it
    builds the next: the largest member (docs/measurements/cpu/pack_memory.tsv).
    """
    if training.get("pack_backend", "loop") == "packed":
        return sum(member_bytes)
    return max(member_bytes)


def run_flops(cell, arch_options=None):
    """FLOPs of one run's training and per-epoch evaluation on the whole test set."""
    dataset = DATASETS[cell["dataset"]]
    options = arch_options or {}
    shape, classes = dataset["input_shape"], dataset["num_classes"]
    model = (cell["arch"], shape, classes, cell["width"], cell["depth"])
    return cell["epochs"] * (
        dataset["n_train"] * train_flops(*model, **options)
        + dataset["n_test"] * forward_flops(*model, **options)
    )


#: The speed our fp32 training path sustained on an H200 at width 64: 20.7 TFLOP/s at
#: depth 100 and 25.8 at depth 1000 (the slower one is used). The expected GPU time of a
#: run is its FLOPs at this rate; its scheduler request (``pack_resources``) assumes a
#: slower rate and adds start-up, so that no job is killed at its time limit.
MEASURED_GPU_FLOPS = 20.7e12
MEASURED_GPU_SOURCE = "docs/measurements/h200/cifar_throughput.log (H200, fp32, width 64)"


def expected_gpu_seconds(cell, arch_options=None):
    """Seconds of one run's training and evaluation at the measured GPU speed (start-up
    and the GC measurements, a few % at paper scale, left out)."""
    return run_flops(cell, arch_options) / MEASURED_GPU_FLOPS


def _train_seconds(cell, training, arch_options):
    """Estimated seconds of one run's training and per-epoch evaluation, start-up aside:
    its FLOPs at an assumed sustained rate plus a launch overhead per branch and step."""
    dataset, depth = DATASETS[cell["dataset"]], cell["depth"]
    flops = run_flops(cell, arch_options)
    speed = "gpu" if _on_gpu(training) else "cpu_thread"
    threads = 1 if _on_gpu(training) else training["threads"]
    steps = cell["epochs"] * math.ceil(dataset["n_train"] / cell["batch_size"])
    return (
        flops / (SUSTAINED_FLOPS[speed] * threads) + steps * depth * BRANCH_STEP_OVERHEAD_S[speed]
    )


def _on_gpu(training):
    return training["device"] == "cuda" or training.get("gpu", False)


def pack_resources(cells, training, arch_options=None):
    """Scheduler resources of a job that trains ``cells`` together (a pack, train.train_pack):
    ``runtime`` (min), ``mem_mb``, ``gpu``.

    Runtime: one start-up, then every member's FLOPs (training and per-epoch evaluation)
    at an assumed sustained rate plus a launch overhead per branch and step; members are
    stepped one after the other, so their times add up. Host memory: the data set once
    (uint8 images take 1 byte per value, others fp32) and the members' (``pack_bytes``):
    four fp32 copies of each one's weights (weights, gradients, momentum, the saved state;
    five with ``pack_backend: packed``) and, on CPU, a batch's activations; with a 50 %
    margin. Both grow with depth. docs/measurements/cpu/pack_memory.tsv has what real
    jobs used (tests/test_cost.py holds the estimate to it).
    GPU: one, when the config trains on CUDA (``device: cuda``) or asks the scheduler for
    one (``gpu: true``).
    """
    options = arch_options or {}
    dataset = DATASETS[cells[0]["dataset"]]
    shape = dataset["input_shape"]
    seconds = sum(_train_seconds(cell, training, options) for cell in cells)

    images = dataset["n_train"] + dataset["n_test"]
    members = []
    # Weights, gradients, momentum and a spare (a save's serialisation); the packed
    # backend also keeps each run's own model beside the packed one.
    copies = 5 if training.get("pack_backend") == "packed" else 4
    for cell in cells:
        model = (cell["arch"], shape, dataset["num_classes"], cell["width"], cell["depth"])
        member = copies * 4 * parameter_count(*model, cell["scaling"], **options)
        if not _on_gpu(training):
            model_shape = (cell["arch"], shape, cell["width"], cell["depth"], cell["scaling"])
            member += cell["batch_size"] * activation_bytes(*model_shape, **options)
        members.append(member)
    host_bytes = images * math.prod(shape) * dataset["value_bytes"] + pack_bytes(members, training)
    return {
        "runtime": math.ceil(STARTUP_MIN + seconds / 60),
        "mem_mb": math.ceil(HOST_BASE_MB + 1.5 * host_bytes / 1e6),
        "gpu": int(_on_gpu(training)),
    }
