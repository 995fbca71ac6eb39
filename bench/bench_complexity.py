"""Cost of one geometric-complexity measurement against one training epoch.

Times the exact and the Hutchinson GC estimators (resdepth.complexity) on a subset of
synthetic inputs, and one epoch of SGD training, for two towers:

- ``mlp``: the embedded default's MLP tower on digits-sized inputs (8x8, 1,347 training
  images, so the epoch is timed in full);
- ``conv``: the conv tower at depth 100 on CIFAR-sized inputs (3x32x32, 50,000 training
  images; the epoch time is extrapolated from ``--conv-steps`` timed steps), width 64 and
  a stride-2 stem as in config/paper.yaml.

Usage:  python bench/bench_complexity.py [--device cuda] [--only conv]
The printed ratio GC/epoch is the fraction of an epoch one GC measurement costs. CPU
figures are CPU seconds of this process (use --threads 1 to compare with one core).
"""

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from resdepth.complexity import geometric_complexity  # noqa: E402
from resdepth.models import build_model  # noqa: E402


def timed(fn, device):
    """(seconds, result) of one call of ``fn`` after a warm-up call.

    On CUDA: wall time, synchronised. On CPU: this process's CPU time, which other jobs
    sharing the cores do not inflate the way they inflate wall time.
    """
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = clock()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return clock() - start, result


def epoch_seconds(model, input_shape, n_train, batch_size, steps, device, bf16):
    """One epoch of SGD (momentum 0.9) on random data, extrapolated from ``steps`` steps;
    forward passes under bf16 autocast if ``bf16`` (as config/paper.yaml trains)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(batch_size, *input_shape, device=device)
    y = torch.randint(0, 10, (batch_size,), device=device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
            logits = model(x)
        torch.nn.functional.cross_entropy(logits.float(), y).backward()
        optimizer.step()

    model.train()
    seconds, _ = timed(lambda: [step() for _ in range(steps)], device)
    return seconds / steps * math.ceil(n_train / batch_size)


def bench(name, arch, input_shape, n_train, width, depth, subset, probes, steps, args, **options):
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_model(arch, input_shape, 10, width, depth, "inv_sqrt", **options)
    model.to(device)
    x = torch.randn(subset, *input_shape, device=device)
    epoch = epoch_seconds(model, input_shape, n_train, args.batch_size, steps, device, args.bf16)
    print(f"\n{name}: {arch} tower depth {depth} width {width}, inputs {input_shape}, {device}")
    precision = "bf16" if args.bf16 else "fp32"
    print(f"  one epoch ({n_train} images, batch {args.batch_size}, {precision}): {epoch:.3f} s")
    generator = torch.Generator(device=device).manual_seed(0)
    for method, n_probes in [("exact", 0)] + [("hutchinson", p) for p in probes]:
        seconds, gc = timed(
            lambda method=method, n_probes=n_probes: geometric_complexity(
                model, x, method, probes=n_probes, chunk_size=args.chunk_size, generator=generator
            ),
            device,
        )
        label = method if method == "exact" else f"hutchinson P={n_probes}"
        print(
            f"  GC {label:<16} on {subset} inputs: {seconds:8.3f} s"
            f"  = {seconds / epoch:6.3f} epochs   GC = {gc.value:.4g} ± {gc.stderr:.2g}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--only", choices=["mlp", "conv"], help="run one tower only")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=torch.cuda.is_available(),
        help="train under bf16 autocast (default on CUDA); GC is always measured in fp32",
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--chunk-size", type=int, default=256, help="GC inputs per chunk")
    parser.add_argument("--probes", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--mlp-depth", type=int, default=64)
    parser.add_argument("--mlp-width", type=int, default=64)
    parser.add_argument("--mlp-subset", type=int, default=256)
    parser.add_argument("--conv-depth", type=int, default=100)
    parser.add_argument("--conv-width", type=int, default=64, help="as config/paper.yaml")
    parser.add_argument("--conv-stem-stride", type=int, default=2, help="as config/paper.yaml")
    parser.add_argument("--conv-subset", type=int, default=None, help="256 on CUDA, 32 on CPU")
    parser.add_argument("--conv-steps", type=int, default=None, help="20 on CUDA, 2 on CPU")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    on_cuda = args.device.startswith("cuda")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    if args.only in (None, "mlp"):
        steps = math.ceil(1347 / args.batch_size)  # the whole digits epoch
        bench(
            "MLP (digits)", "mlp", (8, 8), 1347, args.mlp_width, args.mlp_depth,
            args.mlp_subset, args.probes, steps, args,
        )  # fmt: skip
    if args.only in (None, "conv"):
        subset = args.conv_subset or (256 if on_cuda else 32)
        steps = args.conv_steps or (20 if on_cuda else 2)
        bench(
            "conv (CIFAR-10)", "conv", (3, 32, 32), 50_000, args.conv_width, args.conv_depth,
            subset, args.probes, steps, args, stem_stride=args.conv_stem_stride,
        )  # fmt: skip


if __name__ == "__main__":
    main()
