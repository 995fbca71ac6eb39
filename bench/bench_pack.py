"""Training packs on a GPU: what a pack of K runs costs per member against runs alone.

Prints figures, asserts nothing. Everything trains as a pack's job does
(``resdepth.train_job.trainees``, then ``resdepth.train.train`` for each), on synthetic
CIFAR-shaped uint8 data kept on the device, conv towers of width 64 with a stride-2 stem
as in ``config/paper.yaml``:

1. time: µs per member-module-step (wall time of an epoch of ``--steps`` batches, added up
   over a loop pack's runs, trained one after another, / (steps × K × depth)), per-member
   and pack ("grid-level") images/s and MFU against the card's dense bf16 peak, for packs
   of K ∈ ``--ks`` plain-λ runs at ``--depth``, for both backends (``loop``: the members'
   own models one after the other; ``packed``: one model of grouped convolutions), eager
   and with ``cuda_graph``, and with the graph also channels_last (and bf16 autocast for
   the packed backend; these last, after 2 and 3). The first of two epochs is warm-up
   (cuDNN autotuning, capture), the second is timed from the history's wall times;
2. memory: peak GPU memory per member of a pack of ``--memory-k`` runs at
   ``--memory-depth`` (one short epoch), for both backends;
3. agreement: per-epoch train loss of a member of a packed pack and of a loop pack
   against the same run alone, next to two runs alone (the noise floor: cuDNN may pick
   other algorithms in another run).

A loop pack should cost per member-module-step what a run alone does (it saves per-job
start-up, which the pipeline benchmark measures); a packed one should cost less where
the step is bound by the host launching small kernels.

  GPU:        python bench/bench_pack.py                     (bench/gpu_checks.sh pack)
  CPU check:  python bench/bench_pack.py --device cpu --depth 2 --width 8 --steps 3 \
                  --ks 1 2 --memory-depth 2 --batch-size 16
"""

import argparse
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

from bench_cifar_throughput import bf16_peak, synthetic  # noqa: E402

from resdepth import cost, data, grid, train, train_job  # noqa: E402

SETTINGS = {  # config/paper.yaml's training section, less what is varied here
    "optimizer": "sgd",
    "momentum": 0.9,
    "nesterov": True,
    "weight_decay": 5e-4,
    "warmup_epochs": 1,
    "eval_batch_size": 1000,
}
VARIANTS = {
    "loop": {},
    "loop+graph": {"cuda_graph": True},
    "packed": {"pack_backend": "packed"},
    "packed+graph": {"pack_backend": "packed", "cuda_graph": True},
}
#: The layout and precision options on top of the graph (config/paper.yaml has them off:
#: slower in eager, where the step is bound by launching kernels); timed last.
LAYOUT_VARIANTS = {
    "loop+graph+cl": {"cuda_graph": True, "channels_last": True},
    "packed+graph+cl": {"pack_backend": "packed", "cuda_graph": True, "channels_last": True},
    "packed+graph+bf16+cl": {
        "pack_backend": "packed",
        "cuda_graph": True,
        "channels_last": True,
        "bf16": True,
    },
}
#: Plain scalings to give a pack's members, in turn (any fixed λ trains alike).
SCALINGS = ("inv", "inv_sqrt", 0.05, 0.02, 0.03, 0.2)


def synthetic_data(n_train, n_test, device):
    """Random uint8 CIFAR-shaped images and labels on ``device``, augmented as CIFAR-10."""
    x, y = (t.to(device) for t in synthetic(n_train + n_test, seed=0))
    return data.Prepared(
        *(x[:n_train], y[:n_train], x[n_train:], y[n_train:]),
        num_classes=10,
        mean=torch.tensor([125.3, 123.0, 113.9], device=device).view(3, 1, 1),
        std=torch.tensor([63.0, 62.1, 66.7], device=device).view(3, 1, 1),
        augment=True,
    )


def cells(k, depth, width, batch_size, epochs=2):
    """K plain runs that share a pack: the scalings in turn, then the seeds."""
    return [
        dict(dataset="cifar10", arch="conv", depth=depth, scaling=SCALINGS[i % len(SCALINGS)])
        | dict(seed=i // len(SCALINGS), width=width, lr=0.02, epochs=epochs)
        | dict(batch_size=batch_size)
        for i in range(k)
    ]


def train_pack(cells, dataset, settings, options, device):
    """The trainees of a pack of ``cells``, trained as its job trains them."""
    runs = {grid.run_id(cell): cell for cell in cells}
    params = {"arch_options": options}
    trainees = train_job.trainees("bench", runs, dataset, settings, params, device)
    return [train.train(trainee, dataset, settings) for _, trainee in trainees]


def second_epoch_seconds(history):
    rows = [row for row in history if row["epoch"] >= 1]
    return rows[1]["wall_time_s"] - rows[0]["wall_time_s"]


def time_packs(args, device, dataset, variants, title):
    options = {"stem_stride": 2}
    flops = cost.train_flops("conv", (3, 32, 32), 10, args.width, args.depth, **options)
    peak = bf16_peak(device)
    print(f"{title}, depth {args.depth}, width {args.width}, batch {args.batch_size},")
    print(f"   {args.steps} steps per epoch (second epoch timed; it includes one evaluation)")
    print("   variant        K  us/member-module-step  img/s/member  img/s pack  MFU pack")
    for variant, extra in variants.items():
        if extra.get("cuda_graph") and device.type != "cuda":
            continue
        for k in args.ks:
            trainees = train_pack(
                cells(k, args.depth, args.width, args.batch_size),
                dataset,
                {**SETTINGS, **extra},
                options,
                device,
            )
            seconds = sum(second_epoch_seconds(t.runs[0].history) for t in trainees)
            del trainees
            if device.type == "cuda":
                torch.cuda.empty_cache()  # the graphs' pools of this variant
            per_step = seconds / args.steps
            per_member_module = per_step / (k * args.depth) * 1e6
            member_rate = args.batch_size / per_step
            mfu = f"{k * member_rate * flops / peak:8.1%}" if peak else "     n/a"
            print(
                f"   {variant:13s} {k:2d}  {per_member_module:21.1f}  {member_rate:12.0f}"
                f"  {k * member_rate:10.0f}  {mfu}",
                flush=True,
            )


def memory_per_member(args, device, dataset):
    if device.type != "cuda":
        print("2. memory: CUDA only")
        return
    k, options = args.memory_k, {"stem_stride": 2}
    pack = cells(k, args.memory_depth, args.width, args.batch_size, epochs=1)
    estimate = cost.member_gpu_bytes(pack[0], options)
    for backend in ("loop", "packed"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        train_pack(pack, dataset, {**SETTINGS, "pack_backend": backend}, options, device)
        peak = torch.cuda.max_memory_allocated(device) - base
        print(
            f"2. memory, {backend}, depth {args.memory_depth}, pack of {k}: peak "
            f"{peak / 2**30:.2f} GiB, {peak / k / 2**30:.2f} GiB per member "
            f"(cost.member_gpu_bytes: {estimate / 2**30:.2f} GiB)",
            flush=True,
        )


def agreement(args, device, dataset):
    depth, options = min(args.depth, 10), {"stem_stride": 2}
    pack = cells(4, depth, args.width, args.batch_size, epochs=3)

    def first_member(settings):
        return train_pack(pack, dataset, settings, options, device)[0].runs[0]

    def losses(run):
        return [row["train_loss"] for row in run.history if row["epoch"] >= 1]

    alone = [first_member(SETTINGS) for _ in "ab"]  # a loop pack's first run: alone
    floor = max_relative_difference(losses(alone[1]), losses(alone[0]))
    print(f"3. agreement, depth {depth}, 3 epochs, max |Δ train_loss| / loss against alone:")
    print(f"   alone (noise floor) {floor:.2e}")
    for backend in ("loop", "packed"):
        member = first_member({**SETTINGS, "pack_backend": backend})
        difference = max_relative_difference(losses(member), losses(alone[0]))
        print(f"   {backend:19s} {difference:.2e}", flush=True)


def max_relative_difference(values, reference):
    return max(abs(v - r) / abs(r) for v, r in zip(values, reference, strict=True))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 4, 9, 16])
    parser.add_argument("--memory-depth", type=int, default=1000)
    parser.add_argument("--memory-k", type=int, default=2)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        print(torch.cuda.get_device_name(device), "torch", torch.__version__)
    dataset = synthetic_data(args.steps * args.batch_size, 1000, device)
    start = time.perf_counter()
    time_packs(args, device, dataset, VARIANTS, "1. time")
    memory_per_member(args, device, dataset)
    agreement(args, device, dataset)
    time_packs(args, device, dataset, LAYOUT_VARIANTS, "4. time with layout options")
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
