"""Benchmark of the foundation (issue 2); prints figures, asserts nothing.

1. wall time of the full default pipeline from scratch, in a temporary copy, with training
   packs (``training.packing``, the default) and without (one training job per run, each
   paying its own ``import torch``), and of a no-op rerun (goal ≤ 5 s); and where the
   time goes: jobs and job-seconds per stage (the rules' own benchmark files) against
   the start-up every job pays (a bare ``import torch``, timed here), which is what
   fewer, larger jobs can save;
2. training throughput of our loop (whole data set as tensors, index batching) against a
   plain reference loop over ``torch.utils.data.DataLoader`` with the same model, optimiser,
   schedule, steps and per-epoch evaluation, measured in the same process (goal ≥ 1.0×).

Usage: python bench/bench_pipeline.py [--skip-pipeline | --skip-throughput] [--depth 16]
[--epochs 10]
"""

import argparse
import csv
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

from resdepth import data, models, train  # noqa: E402


def time_pipeline(packing):
    """Seconds of the default pipeline from scratch and of a no-op rerun, in a temporary
    copy, with ``training.packing.enabled`` set to ``packing``."""
    with tempfile.TemporaryDirectory() as tmp:
        for part in ("Snakefile", "workflow", "config", "scripts", "envs"):
            src = REPO / part
            cmd = ["cp", "-r", str(src), tmp]
            subprocess.run(cmd, check=True)
        config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
        config["training"]["packing"]["enabled"] = packing
        config_file = Path(tmp) / "config" / "bench.yaml"
        config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        snakemake = [sys.executable, "-m", "snakemake", "--cores", "all", "--quiet", "all"]
        snakemake += ["--configfile", str(config_file)]
        start = time.perf_counter()
        subprocess.run(snakemake, cwd=tmp, check=True, capture_output=True)
        full = time.perf_counter() - start
        start = time.perf_counter()
        subprocess.run(snakemake, cwd=tmp, check=True, capture_output=True)
        noop = time.perf_counter() - start
        stages = job_seconds(Path(tmp) / "results" / "benchmarks")
    return full, noop, stages


def job_seconds(benchmarks):
    """{stage: [jobs, seconds]} from the rules' benchmark files: ``train`` and
    ``expansion`` (one file per job, in a folder of their own), every other rule as
    ``other``, and ``all`` of them."""
    stages = {stage: [0, 0.0] for stage in ("train", "expansion", "other", "all")}
    for path in benchmarks.rglob("*.tsv"):
        with open(path) as f:
            seconds = float(next(csv.DictReader(f, delimiter="\t"))["s"])
        for stage in (path.parent.name if path.parent != benchmarks else "other", "all"):
            stages[stage][0] += 1
            stages[stage][1] += seconds
    return stages


def import_torch_seconds(repeats=3):
    """Best of ``repeats`` wall times of a fresh Python that only imports torch: the
    least start-up any job of the pipeline pays."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch"], check=True)
        times.append(time.perf_counter() - start)
    return min(times)


def compare_packing():
    """The default pipeline with training packs and without, one after the other."""
    packed, noop, stages = time_pipeline(packing=True)
    alone, _, alone_stages = time_pipeline(packing=False)
    floor = import_torch_seconds()
    print(f"full default pipeline from scratch, packs:       {packed:7.1f} s")
    print(f"full default pipeline from scratch, one per run: {alone:7.1f} s")
    print(f"  packing speed-up                               {alone / packed:7.2f}x")
    print(f"no-op rerun:                                     {noop:7.1f} s   (goal <= 5 s)")
    print("job-seconds per stage (the rules' benchmark files):  packs | one per run")
    for stage in stages:
        print(f"  {stage:10s} {figures(stages[stage])} | {figures(alone_stages[stage])}")
    jobs, seconds = stages["all"]
    compute = seconds - jobs * floor
    print(f"start-up: a bare `import torch` takes {floor:.2f} s, so the {jobs} jobs with packs")
    print(f"  pay at least {jobs * floor:.0f} s of start-up and compute at most {compute:.0f} s:")
    cores = os.cpu_count()  # the pipeline ran with --cores all
    print(f"  {compute / cores:.0f} s of wall time on {cores} cores, were start-up free")


def figures(jobs_and_seconds):
    jobs, seconds = jobs_and_seconds
    return f"{jobs:3d} jobs {seconds:6.1f} s"


def reference_loop(cell, dataset, settings):
    """The textbook loop: DataLoader over TensorDatasets, per-step lr, per-epoch eval."""
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(cell["seed"])
    model = models.build_model(
        "mlp", dataset.input_shape, 10, cell["width"], cell["depth"], cell["scaling"]
    )
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=cell["lr"],
        momentum=settings["momentum"],
        nesterov=settings["nesterov"],
        weight_decay=settings["weight_decay"],
    )
    train_loader = DataLoader(
        TensorDataset(dataset.x_train, dataset.y_train),
        batch_size=cell["batch_size"],
        shuffle=True,
    )
    test_loader = DataLoader(
        TensorDataset(dataset.x_test, dataset.y_test), batch_size=settings["eval_batch_size"]
    )
    total = len(train_loader) * cell["epochs"]
    warmup = round(settings["warmup_epochs"] * len(train_loader))
    step = 0
    for _ in range(cell["epochs"]):
        model.train()
        for x, y in train_loader:
            for group in optimizer.param_groups:
                group["lr"] = train.lr_at(step, total, warmup, cell["lr"])
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
        model.eval()
        with torch.no_grad():
            for x, y in test_loader:
                F.cross_entropy(model(x), y)


def time_throughput(depth, epochs, repeats=3):
    torch.set_num_threads(1)
    settings = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["training"]
    settings["gc"] = None  # GC tracking is extra work the reference loop does not do
    dataset = data.Prepared(num_classes=10, **data.digits_tensors(0.25, split_seed=0))
    cell = dict(dataset="digits", arch="mlp", depth=depth, scaling="inv_sqrt", seed=0)
    cell.update(width=64, lr=0.05, epochs=epochs, batch_size=128)
    samples = len(dataset.y_train) * epochs

    def seconds(fn):
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    # Alternated, best of each: a shared machine's speed drifts between runs.
    ours_times, ref_times = [], []
    for _ in range(repeats):
        ours_times.append(
            seconds(lambda: train.train(train.Run(cell, dataset, settings), dataset, settings))
        )
        ref_times.append(seconds(lambda: reference_loop(cell, dataset, settings)))
    ours, ref = samples / min(ours_times), samples / min(ref_times)
    steps = math.ceil(len(dataset.y_train) / cell["batch_size"]) * epochs
    print(f"training throughput, MLP depth {depth}, width 64, {steps} steps, 1 thread:")
    print(f"  ours      {ours:9.0f} samples/s")
    print(f"  reference {ref:9.0f} samples/s (DataLoader)")
    print(f"  ratio     {ours / ref:9.2f}x   (goal >= 1.0x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    skip = parser.add_mutually_exclusive_group()
    skip.add_argument("--skip-pipeline", action="store_true")
    skip.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--depth", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    if not args.skip_throughput:
        time_throughput(args.depth, args.epochs)
    if not args.skip_pipeline:
        compare_packing()
