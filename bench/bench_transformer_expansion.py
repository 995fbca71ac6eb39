"""Benchmark of a transformer tower's expansion terms (issue 20): prints figures, asserts
nothing.

The cost of ``taylor_terms`` (series arithmetic through attention, LayerNorm and GELU) and
of ``path_terms`` (frozen patterns, σ and gates) relative to one forward pass of the
tower, at n = 16 and 64 modules and orders K = 1, 2, 4, 6. Goals: Taylor ≤ 30× at K = 6;
paths ≤ K + 2 (K + 2 slots through every module).

    python bench/bench_transformer_expansion.py
    python bench/bench_transformer_expansion.py --device cuda --batch 64 --context 64
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from resdepth import expansion, models  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu | cuda")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--context", type=int, default=17, help="sequence length T")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--modules", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--orders", type=int, nargs="+", default=[1, 2, 4, 6])
    parser.add_argument("--norms", nargs="+", default=["pre_ln", "none"])
    parser.add_argument("--activation", default="gelu", choices=sorted(models.ACTIVATIONS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    return parser.parse_args()


def seconds(device, repeats, fn, *args, **kwargs):
    """Best time of ``fn`` over ``repeats`` runs after a warm-up: on the CPU the process's
    CPU time (with one thread, what the work itself took, far less disturbed than wall
    time by other work on a shared machine), on CUDA the synchronised wall time."""
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    fn(*args, **kwargs)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = clock()
        fn(*args, **kwargs)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(clock() - start)
    return min(times)


def main():
    args = parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    torch.set_num_threads(args.threads)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"device={name} width={args.width} heads={args.heads} T={args.context} "
        f"batch={args.batch} activation={args.activation} dtype={args.dtype} "
        f"torch={torch.__version__} threads={torch.get_num_threads()}"
    )
    print(
        f"{'norm':>6} {'n':>4} {'K':>3} {'forward_s':>10} {'taylor/fwd':>10} {'goal':>5} "
        f"{'path/fwd':>9} {'goal':>5}"
    )
    for norm in args.norms:
        for n in args.modules:
            torch.manual_seed(0)
            model = models.build_model(
                "transformer",
                (args.context,),
                10,
                args.width,
                n // 2,
                "inv_sqrt",
                vocab_size=32,
                heads=args.heads,
                norm=norm,
                activation=args.activation,
            )
            model = model.to(device=device, dtype=dtype).eval()
            ids = torch.randint(0, 32, (args.batch, args.context), device=device)
            with torch.no_grad():
                x0 = model.stem(ids)
                forward_s = seconds(device, args.repeats, model.tower, x0)
            for order in args.orders:
                taylor_s = seconds(device, args.repeats, expansion.taylor_terms, model, x0, order)
                path_s = seconds(
                    device, args.repeats, expansion.path_terms, model, x0, order, freeze="secant"
                )
                print(
                    f"{norm:>6} {n:>4} {order:>3} {forward_s:>10.4g} "
                    f"{taylor_s / forward_s:>10.1f} {30 if order == 6 else '':>5} "
                    f"{path_s / forward_s:>9.1f} {order + 2:>5}"
                )


if __name__ == "__main__":
    main()
