"""Benchmark of the expansion terms (issue 4): prints figures, asserts nothing.

1. Small towers: path_terms / taylor_terms at every order vs enumerating all 2^n paths.
2. A deep tower (default n = 1000): one full extraction at order K vs one forward pass.
   (Transformer towers: bench/bench_transformer_expansion.py.)
   The goal is ≤ (K+1) forward passes plus the mask pass, i.e. a ratio ≤ K + 2.

    python bench/bench_expansion.py                       # CUDA if available
    python bench/bench_expansion.py --device cpu --depth 300 --batch 64
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from resdepth import expansion, models  # noqa: E402

DEFAULT_INPUT_SHAPE = {"mlp": (64,), "conv": (3, 32, 32)}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--arch", default="mlp", choices=sorted(DEFAULT_INPUT_SHAPE))
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--scaling", default="inv_sqrt")
    parser.add_argument("--small-depths", type=int, nargs="+", default=[4, 6, 8, 10])
    parser.add_argument("--depth", type=int, default=1000)
    parser.add_argument("--orders", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return parser.parse_args()


def seconds(device, repeats, fn, *args):
    """Best wall time of ``fn(*args)`` over ``repeats`` runs after a warm-up (the minimum is
    the figure least disturbed by other work on a shared machine)."""
    fn(*args)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn(*args)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def tower_and_input(args, depth, device, dtype):
    torch.manual_seed(0)
    input_shape = DEFAULT_INPUT_SHAPE[args.arch]
    model = models.build_model(args.arch, input_shape, 10, args.width, depth, args.scaling)
    model = model.to(device=device, dtype=dtype).eval()
    with torch.no_grad():
        x0 = model.stem(torch.randn(args.batch, *input_shape, device=device, dtype=dtype))
    return model.tower, x0


def main():
    args = parse_args()
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    if args.threads:
        torch.set_num_threads(args.threads)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"device={name} arch={args.arch} width={args.width} batch={args.batch} "
        f"scaling={args.scaling} dtype={args.dtype} torch={torch.__version__} "
        f"threads={torch.get_num_threads()}"
    )

    print("\n1. every order of a small tower: 2^n path enumeration vs coefficient propagation")
    print(f"{'n':>4} {'enumerate_s':>12} {'path_s':>10} {'taylor_s':>10} {'enum/path':>10}")
    for n in args.small_depths:
        tower, x0 = tower_and_input(args, n, device, dtype)
        enumerate_s = seconds(device, args.repeats, expansion.path_terms_by_enumeration, tower, x0)
        path_s = seconds(device, args.repeats, expansion.path_terms, tower, x0, n)
        taylor_s = seconds(device, args.repeats, expansion.taylor_terms, tower, x0, n)
        print(
            f"{n:>4} {enumerate_s:>12.4g} {path_s:>10.4g} {taylor_s:>10.4g} "
            f"{enumerate_s / path_s:>10.1f}"
        )

    print(f"\n2. full extraction at n = {args.depth} relative to one forward pass")
    tower, x0 = tower_and_input(args, args.depth, device, dtype)
    with torch.no_grad():
        forward_s = seconds(device, args.repeats, tower, x0)
    print(f"forward: {forward_s:.4g} s")
    print(
        f"{'K':>3} {'path_s':>10} {'path/fwd':>9} {'taylor_s':>10} {'taylor/fwd':>10} {'goal':>5}"
    )
    for order in args.orders:
        path_s = seconds(device, args.repeats, expansion.path_terms, tower, x0, order)
        taylor_s = seconds(device, args.repeats, expansion.taylor_terms, tower, x0, order)
        print(
            f"{order:>3} {path_s:>10.4g} {path_s / forward_s:>9.2f} {taylor_s:>10.4g} "
            f"{taylor_s / forward_s:>10.2f} {order + 2:>5}"
        )


if __name__ == "__main__":
    main()
