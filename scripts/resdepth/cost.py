"""What a training job costs: FLOPs per image, memory, and the resources a scheduler needs.

Torch-free, because the Snakefile asks it for every job's ``runtime`` and ``mem_mb``
while planning the DAG. The FLOP counts are exact for the matmuls and convolutions
(what ``torch.utils.flop_counter`` counts; a test checks they agree) and also give the
benchmark its model FLOP utilisation.
"""

import math

#: What planning needs to know of each data set before it is prepared: split sizes,
#: input shape, classes, and bytes per stored value (CIFAR-10 stays uint8). The sizes of
#: ``recall`` come from its config section (``dataset_info``).
DATASETS = {
    "digits": dict(n_train=1347, n_test=450, input_shape=(8, 8), num_classes=10, value_bytes=4),
    "cifar10": dict(
        n_train=50_000, n_test=10_000, input_shape=(3, 32, 32), num_classes=10, value_bytes=1
    ),
}
#: Data sets of token ids (int64), the transformer's inputs; the others hold images.
TOKEN_DATASETS = ("recall",)


def dataset_info(name, datasets=None):
    """``DATASETS[name]``; for ``recall`` the same keys (plus ``vocab_size``) computed from
    its section of the config's ``datasets`` (see ``data.recall_tensors``)."""
    if name != "recall":
        return DATASETS[name]
    settings = (datasets or {}).get("recall")
    if not settings:
        raise ValueError("the recall data set's sizes come from the config's datasets.recall")
    return dict(
        n_train=settings["n_train"],
        n_test=settings["n_test"],
        input_shape=(2 * settings["pairs"] + 1,),
        num_classes=settings["values"],
        value_bytes=8,
        vocab_size=settings["keys"] + settings["values"],
    )


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


def _layers(arch, input_shape, num_classes, width, depth, stem_stride=1, **_shape_free):
    """``(forward FLOPs per image, input gradient needed?, count)`` per kind of matmul/conv
    layer: a tower's branches are ``depth`` copies of one, so the cost is O(1) in depth.
    Options that do not change a matmul's shape (activation; a transformer's heads, norm,
    init, context, vocab_size) cost nothing here."""
    if arch == "transformer":
        return _transformer_layers(input_shape, num_classes, width, depth)
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


def _transformer_layers(input_shape, num_classes, width, depth):
    """A transformer's matmuls per sequence of T tokens: ``depth`` blocks of attention (the
    q/k/v projection, the T×T logits q kᵀ and mixing P v, all T² of them as the explicit
    causal softmax computes, and the output projection) and an MLP of hidden width 4d;
    the stem is an embedding lookup (no FLOPs); the head reads the last position only."""
    (length,) = input_shape
    d = width
    return [
        (2 * length * d * 3 * d, True, depth),  # q, k, v
        (2 * length * length * d, True, 2 * depth),  # q kᵀ and P v (both operands learn)
        (2 * length * d * d, True, depth),  # output projection
        (2 * length * d * 4 * d, True, 2 * depth),  # MLP up and down
        (2 * d * num_classes, True, 1),  # head
    ]


def forward_flops(arch, input_shape, num_classes, width, depth, **arch_options):
    """Matmul/conv FLOPs of one image's forward pass (1 multiply-add = 2 FLOPs)."""
    layers = _layers(arch, input_shape, num_classes, width, depth, **arch_options)
    return sum(f * count for f, _, count in layers)


def train_flops(arch, input_shape, num_classes, width, depth, **arch_options):
    """FLOPs of one image's forward + backward: backward is one product for the weight
    gradient and, except at the stem, one for the input gradient."""
    layers = _layers(arch, input_shape, num_classes, width, depth, **arch_options)
    return sum(f * (3 if input_grad else 2) * count for f, input_grad, count in layers)


def parameter_count(
    arch, input_shape, num_classes, width, depth, scaling, stem_stride=1, **transformer
):
    """Number of trainable parameters of ``models.build_model`` with these settings
    (a transformer's options: ``vocab_size``, ``context``, ``norm``)."""
    if arch == "transformer":
        return _transformer_parameters(
            input_shape, num_classes, width, depth, scaling, **transformer
        )
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


def _transformer_parameters(
    input_shape, num_classes, width, depth, scaling, vocab_size, context=None, norm=None, **_
):
    """``models.transformer_resnet``'s parameters: embeddings, per block q/k/v, output
    projection, MLP (4d hidden), LayerNorms (pre-LN: one per branch and one before the
    head), the head, and skipinit's α per module. ``norm`` unset follows the scaling."""
    d, blocks = width, depth
    context = input_shape[0] if context is None else context
    pre_ln = (norm or ("pre_ln" if scaling == "bn" else "none")) == "pre_ln"
    block = (3 * d * d + 3 * d) + (d * d + d) + (4 * d * d + 4 * d) + (4 * d * d + d)
    block += 2 * 2 * d if pre_ln else 0
    head = d * num_classes + num_classes + (2 * d if pre_ln else 0)
    learned_scales = 2 * blocks if scaling == "skipinit" else 0
    return (vocab_size + context) * d + blocks * block + head + learned_scales


def activation_bytes(arch, input_shape, width, depth, scaling, stem_stride=1, heads=1, **_):
    """Upper estimate of the activation memory of one image in training (fp32).

    Per branch autograd keeps two feature maps (three for skipinit, four with BatchNorm:
    measured with saved-tensor hooks); two more cover the transient tensors of a step.
    A transformer block keeps about 16 T×d tensors' worth (LayerNorms, q/k/v, mixed values,
    the 4d hidden layer before and after its activation) and two heads×T×T patterns
    (logits and softmax): an estimate, not a measurement.
    """
    if arch == "transformer":
        (length,) = input_shape
        return 4 * depth * (16 * length * width + 2 * heads * length * length)
    if arch == "mlp":
        elements = width
    else:
        elements = width * (input_shape[1] // stem_stride) * (input_shape[2] // stem_stride)
    saved = {"bn": 4, "skipinit": 3}.get(scaling, 2)
    return 4 * elements * (saved + 2) * depth


def _model_options(dataset, arch_options):
    """The model options of a run: the config's, plus the vocabulary of a token data set."""
    options = dict(arch_options or {})
    if "vocab_size" in dataset:
        options["vocab_size"] = dataset["vocab_size"]
    return options


def member_gpu_bytes(cell, arch_options=None, datasets=None):
    """Estimated GPU memory of one run in training (fp32): a batch's activations and four
    copies of the weights (weights, gradients, momentum, a spare). The pack planner's
    budget adds these up over a pack's members. ``datasets``: the config's section (the
    sizes of ``recall``)."""
    dataset = dataset_info(cell["dataset"], datasets)
    shape, options = dataset["input_shape"], _model_options(dataset, arch_options)
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


def run_flops(cell, arch_options=None, datasets=None):
    """FLOPs of one run's training and per-epoch evaluation on the whole test set.
    ``datasets``: the config's section (the sizes of ``recall``)."""
    dataset = dataset_info(cell["dataset"], datasets)
    options = _model_options(dataset, arch_options)
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


def expected_gpu_seconds(cell, arch_options=None, datasets=None):
    """Seconds of one run's training and evaluation at the measured GPU speed (start-up
    and the GC measurements, a few % at paper scale, left out)."""
    return run_flops(cell, arch_options, datasets) / MEASURED_GPU_FLOPS


def _train_seconds(cell, training, arch_options, datasets=None):
    """Estimated seconds of one run's training and per-epoch evaluation, start-up aside:
    its FLOPs at an assumed sustained rate plus a launch overhead per branch and step
    (a transformer block is two branches)."""
    dataset, depth = dataset_info(cell["dataset"], datasets), cell["depth"]
    flops = run_flops(cell, arch_options, datasets)
    speed = "gpu" if _on_gpu(training) else "cpu_thread"
    threads = 1 if _on_gpu(training) else training["threads"]
    steps = cell["epochs"] * math.ceil(dataset["n_train"] / cell["batch_size"])
    branches = depth * (2 if cell["arch"] == "transformer" else 1)
    return (
        flops / (SUSTAINED_FLOPS[speed] * threads)
        + steps * branches * BRANCH_STEP_OVERHEAD_S[speed]
    )


def _on_gpu(training):
    return training["device"] == "cuda" or training.get("gpu", False)


def pack_resources(cells, training, arch_options=None, datasets=None):
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
    one (``gpu: true``). ``datasets``: the config's section (the sizes of ``recall``).
    """
    dataset = dataset_info(cells[0]["dataset"], datasets)
    shape, options = dataset["input_shape"], _model_options(dataset, arch_options)
    seconds = sum(_train_seconds(cell, training, arch_options, datasets) for cell in cells)

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


def taylor_flops(input_shape, num_classes, width, depth, order):
    """Matmul FLOPs of a transformer tower's Taylor terms up to ``order`` K on one
    sequence (resdepth.expansion.taylor_terms): each module maps the K slots of its input
    series up to order K − 1, through every linear layer once per slot and through
    attention's two T×T bilinear products (q kᵀ, P v) once per pair of slots of total
    order below K (K(K+1)/2 pairs); the forward pass for x_n comes on top. The head is not
    applied."""
    layers = _transformer_layers(input_shape, num_classes, width, depth)[:-1]  # no head
    bilinear = layers[1][0] * layers[1][2]
    tower = sum(f * count for f, _, count in layers)
    return (tower - bilinear) * order + bilinear * order * (order + 1) // 2 + tower


def transformer_study_flops(studies, datasets, arch_options):
    """Matmul FLOPs of the studies of fresh transformers (the config's ``transformer``
    section: ``{"init_norms": ..., "radius": ..., "truncation": ...}``), per study.

    Init norms: one forward pass per (norm, scaling, depth, seed); radius: the Taylor terms
    up to its order per (norm, depth, seed); truncation: the Taylor terms up to its
    highest order and one forward pass per λ, per (norm, seed). All on ``batch_size``
    sequences, in float64 on the CPU (expansion.threads): count them at half the fp32
    rate of SUSTAINED_FLOPS["cpu_thread"] per thread; at small widths the per-layer
    overhead of a few hundred kernels per module dominates instead."""
    flops = {}
    for name, study in studies.items():
        data = dataset_info(study["dataset"], datasets)
        shape, classes = data["input_shape"], data["num_classes"]

        def forward(depth, shape=shape, classes=classes, width=study["width"]):
            return forward_flops("transformer", shape, classes, width, depth, **arch_options)

        norms, batch = len(study["norm"]), study["batch_size"]
        if name == "init_norms":
            per = len(study["scaling"]) * len(study["seed"])
            total = per * sum(forward(depth) for depth in study["depth"])
        elif name == "radius":
            total = len(study["seed"]) * sum(
                taylor_flops(shape, classes, study["width"], depth, study["order"])
                for depth in study["depth"]
            )
        else:
            depth, order = study["depth"], max(study["orders"])
            taylor = taylor_flops(shape, classes, study["width"], depth, order)
            total = len(study["seeds"]) * (taylor + study["lambda_steps"] * forward(depth))
        flops[name] = norms * batch * total
    return flops
