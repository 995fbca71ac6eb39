"""Training throughput of the conv tower on CIFAR-shaped data: our path vs a plain loop.

Prints figures, asserts nothing. Ours is ``resdepth.train.train`` itself (uint8
images on the device, batch crop+flip on the device, no DataLoader), in up to five
variants: fp32; bf16 autocast with channels_last; each of these with the step replayed
as one CUDA graph (``cuda_graph``); bf16+channels_last with torch.compile of the branches.
The reference is the textbook loop: a ``torch.utils.data.DataLoader`` over CPU tensors
with per-sample crop+flip and normalisation, fp32 (PyTorch defaults, so cuDNN convs use
TF32 on a GPU), NCHW, the same model, optimiser and schedule. Both run in this process,
on the same synthetic data (random uint8 images and labels), with cudnn.benchmark on.

Each run trains two epochs of ``--steps`` batches and evaluates on one batch after each;
we time the second epoch, so warm-up (cudnn autotuning, compilation) is excluded.
MFU = achieved FLOP/s (exact matmul/conv FLOPs, resdepth.cost, training and the
evaluation batch) / the card's dense bf16 peak.

With ``--busy`` (CUDA only) it prints instead, for each variant, how busy the GPU is
during a training step (kernel time / wall time, from the profiler): far below 100 % the
step is bound by the host launching kernels, not by the GPU. It is a separate run so
that a profiler failure cannot cost the throughput figures.

  CPU (here):  python bench/bench_cifar_throughput.py --depths 4 --width 16 --batch-size 32 \
                   --steps 100 --repeats 3
  GPU:         python bench/bench_cifar_throughput.py            (depths 100 and 1000)
"""

import argparse
import sys
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

from resdepth import cost, data, models, train  # noqa: E402

#: Dense bf16 tensor-core peaks (FLOP/s) from NVIDIA's data sheets, most specific
#: name first. H100 SXM and H200 share the H100 SXM's tensor cores: 989 TFLOP/s.
BF16_PEAK = (
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H200 NVL", 835e12),
    ("H100", 989e12),
    ("H200", 989e12),
    ("A100", 312e12),
)
SHAPE, CLASSES = (3, 32, 32), 10
SETTINGS = {  # config/paper.yaml's training section, less what the variants set
    "optimizer": "sgd",
    "momentum": 0.9,
    "nesterov": True,
    "weight_decay": 5e-4,
    "warmup_epochs": 1,
}
VARIANTS = {
    "fp32": {},
    "fp32+graph": {"cuda_graph": True},
    "bf16+cl": {"bf16": True, "channels_last": True},
    "bf16+cl+graph": {"bf16": True, "channels_last": True, "cuda_graph": True},
    "bf16+cl+compile": {"bf16": True, "channels_last": True, "compile": True},
}


def bf16_peak(device):
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in BF16_PEAK if key in name), None)


def synthetic(n, seed):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, *SHAPE), generator=g, dtype=torch.uint8)
    return images, torch.randint(0, CLASSES, (n,), generator=g)


class AugmentedImages(Dataset):
    """Per-sample crop (4-pixel zero padding) + flip + normalisation, as in a textbook."""

    def __init__(self, images, labels, mean, std, augment):
        self.images, self.labels, self.mean, self.std = images, labels, mean, std
        self.augment = augment

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        x = self.images[i]
        if self.augment:
            top, left = torch.randint(0, 9, (2,)).tolist()
            x = F.pad(x, (4, 4, 4, 4))[:, top : top + 32, left : left + 32]
            if torch.rand(()) < 0.5:
                x = x.flip(-1)
        return (x.float() - self.mean) / self.std, self.labels[i]


def reference_epoch_seconds(cell, train_set, test_set, device, workers):
    """The plain loop, two epochs; returns the second epoch's wall time."""
    torch.manual_seed(cell["seed"])
    model = models.build_model(
        "conv", SHAPE, CLASSES, cell["width"], cell["depth"], cell["scaling"], stem_stride=2
    ).to(device)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=cell["lr"], momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    loader = dict(batch_size=cell["batch_size"], num_workers=workers)
    loader["pin_memory"] = device.type == "cuda"
    loader["persistent_workers"] = workers > 0
    train_loader = DataLoader(train_set, shuffle=True, drop_last=True, **loader)
    test_loader = DataLoader(test_set, **loader)
    total = len(train_loader) * cell["epochs"]
    step, times = 0, []
    for _ in range(cell["epochs"]):
        start = time.perf_counter()
        model.train()
        for x, y in train_loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            for group in optimizer.param_groups:
                group["lr"] = train.lr_at(step, total, len(train_loader), cell["lr"])
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
        model.eval()
        with torch.no_grad():
            for x, y in test_loader:
                F.cross_entropy(model(x.to(device)), y.to(device)).item()
        times.append(time.perf_counter() - start)
    return times[-1]


def ours_epoch_seconds(cell, dataset, options, device):
    settings = {**SETTINGS, "eval_batch_size": cell["batch_size"], **options}
    trainee = train.Run(cell, dataset, settings, {"stem_stride": 2}, device)
    (run,) = train.train(trainee, dataset, settings).runs
    if run.diverged_at:
        raise RuntimeError(
            f"benchmark run diverged at step {run.diverged_at[1]} (random labels at "
            f"lr {cell['lr']:g}, batch {cell['batch_size']}): rerun with a smaller --lr"
        )
    return run.history[1]["wall_time_s"] - run.history[0]["wall_time_s"]


def gpu_busy(depth, args, options, device, steps=5):
    """Kernel time / wall time of ``steps`` training steps (train.TrainStep, then the
    optimiser step) on one fixed batch, after warm-up; wall time is taken without the
    profiler, whose own overhead would make the host look slower."""
    from torch.autograd import DeviceType

    settings = {**SETTINGS, **options}
    torch.manual_seed(0)
    model = models.build_model(
        "conv", SHAPE, CLASSES, args.width, depth, "inv_sqrt", stem_stride=2
    ).to(device)
    train.apply_speed_options(model, settings)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, foreach=True)
    train_step = train.TrainStep(model, settings, args.batch_size, device)
    images, y = synthetic(args.batch_size, seed=1)
    x, y = (images.float().to(device) - 128) / 64, y.to(device)  # timing ignores the scale

    def run(n):
        for _ in range(n):
            train_step(x, y)
            optimizer.step()
        torch.cuda.synchronize(device)

    run(2)  # autotuning, compilation, graph capture
    start = time.perf_counter()
    run(steps)
    wall = time.perf_counter() - start
    with torch.profiler.profile() as profile:
        run(steps)
    kernels = [e for e in profile.events() if e.device_type == DeviceType.CUDA]
    return sum(e.device_time_total for e in kernels) / 1e6 / wall


def bench_depth(depth, args, device):
    n_train = args.steps * args.batch_size
    x_train, y_train = synthetic(n_train, seed=1)
    x_test, y_test = synthetic(args.batch_size, seed=2)
    mean = x_train.float().mean(dim=(0, 2, 3)).view(3, 1, 1)
    std = x_train.float().std(dim=(0, 2, 3)).view(3, 1, 1)
    cell = dict(dataset="cifar10", arch="conv", depth=depth, scaling="inv_sqrt", seed=0)
    cell.update(width=args.width, lr=args.lr, epochs=2, batch_size=args.batch_size)

    model = ("conv", SHAPE, CLASSES, args.width, depth)
    epoch_flops = n_train * cost.train_flops(*model, stem_stride=2)
    epoch_flops += args.batch_size * cost.forward_flops(*model, stem_stride=2)
    peak = bf16_peak(device)
    results = {}

    def report(name, measure):
        """Run ``measure`` (→ seconds of the timed epoch) ``--repeats`` times; print the best."""
        seconds = min(measure() for _ in range(args.repeats))
        rate = n_train / seconds
        achieved = epoch_flops / seconds
        mfu = f"{100 * achieved / peak:5.1f} %" if peak else "  n/a"
        ratio = f"{rate / results['reference']:6.2f}x" if "reference" in results else "      "
        line = f"  {name:17s} {rate:10.0f} img/s  {ratio}  {achieved / 1e9:10.1f} GFLOP/s"
        print(f"{line}  MFU {mfu}", flush=True)
        results[name] = rate

    print(
        f"depth {depth}, width {args.width}, batch {args.batch_size}, {args.steps} timed "
        f"steps, {cost.train_flops(*model, stem_stride=2) / 1e9:.2f} GFLOP/train image",
        flush=True,
    )
    reference_sets = [
        AugmentedImages(x_train, y_train, mean, std, augment=True),
        AugmentedImages(x_test, y_test, mean, std, augment=False),
    ]
    report(
        "reference", partial(reference_epoch_seconds, cell, *reference_sets, device, args.workers)
    )
    prepared = data.Prepared(
        *(t.to(device) for t in (x_train, y_train, x_test, y_test)),
        CLASSES,
        mean.to(device),
        std.to(device),
        augment=True,
    )
    for name in args.variants:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        report(f"ours {name}", partial(ours_epoch_seconds, cell, prepared, VARIANTS[name], device))
        if device.type == "cuda":
            print(f"    peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--depths", type=int, nargs="+", help="default: 100 1000 (GPU), 4 (CPU)")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="batches per timed epoch")
    parser.add_argument(
        "--lr", type=float, default=0.01, help="peak lr; random labels diverge at large batches"
    )
    parser.add_argument(
        "--workers", type=int, help="reference DataLoader workers (default: 4 on a GPU, 0 on a CPU)"
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=list(VARIANTS),
        help="default: all on a GPU, fp32 on a CPU (CPUs without bf16 units crawl in bf16)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=1, help="report the best of N runs")
    parser.add_argument("--busy", action="store_true", help="GPU busy share per variant instead")
    args = parser.parse_args()

    device = train.pick_device(args.device)
    torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = True  # both paths: fixed shapes, autotune once
    if args.workers is None:
        args.workers = 4 if device.type == "cuda" else 0
    if args.depths is None:
        args.depths = [100, 1000] if device.type == "cuda" else [4]
    if args.variants is None:
        args.variants = list(VARIANTS) if device.type == "cuda" else ["fp32"]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    peak = bf16_peak(device)
    print(
        f"device: {name}; bf16 dense peak: {f'{peak / 1e12:.0f} TFLOP/s' if peak else 'n/a'}; "
        f"torch {torch.__version__}; {args.threads} CPU thread(s), "
        f"reference DataLoader workers: {args.workers}",
        flush=True,
    )
    if args.busy and device.type != "cuda":
        parser.error("--busy needs a CUDA device")
    start = time.perf_counter()
    for depth in args.depths:
        if not args.busy:
            bench_depth(depth, args, device)
            continue
        print(f"depth {depth}, width {args.width}, batch {args.batch_size}", flush=True)
        for name in args.variants:
            busy = gpu_busy(depth, args, VARIANTS[name], device)
            print(f"  {name:17s} GPU busy {100 * busy:3.0f} % of a step", flush=True)
    print(f"total wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
