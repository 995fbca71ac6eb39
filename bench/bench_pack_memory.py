"""Host memory of a training job by pack size and backend, as a table for tests/test_cost.py.

Runs the real job (``resdepth.train_job.train_pack``) on CPU for packs of 1 to 4 wide MLP
runs (width 768, depth 3: the weights dwarf everything else) on 64 digits, one epoch,
and samples the process's resident memory every 0.5 ms: the peak growth over what a
warm-up job (torch's own start-up) left is the pack's memory. Each pack in a fresh
process (one that trained before reuses the pages it freed). Prints a TSV
(``backend, members, width, depth, batch_size, peak_growth_mb``); the committed copy is
docs/measurements/cpu/pack_memory.tsv.

    .venv/bin/python bench/bench_pack_memory.py > docs/measurements/cpu/pack_memory.tsv
"""

import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
from resdepth import data, grid, train_job  # noqa: E402

WIDTH, DEPTH, BATCH = 768, 3, 32
SETTINGS = {"momentum": 0.9, "nesterov": True, "weight_decay": 5e-4, "warmup_epochs": 0}
SETTINGS.update(eval_batch_size=1024, checkpoint_every=0)
PARAMS = {"training": {}, "arch_options": {}, "augment": False}


def cells(members, width=WIDTH):
    scalings = ["inv", 0.5, "one", 0.25][:members]
    base = dict(dataset="digits", arch="mlp", depth=DEPTH, seed=0, width=width)
    return [base | dict(scaling=s, lr=0.01, epochs=1, batch_size=BATCH) for s in scalings]


def job(root, name, pack, settings):
    """The training job of ``pack`` (cells) in ``root/name``, as the train rule runs it."""
    runs = {grid.run_id(cell): cell for cell in pack}
    files = {
        run_id: train_job.RunFiles(
            *(
                root / name / run_id / f
                for f in ("model.pt", "history.csv", "test_correct.npy", "metrics.json")
            )
        )
        for run_id in runs
    }
    cpu = torch.device("cpu")
    train_job.train_pack(name, files, runs, root / "d.pt", settings, PARAMS, cpu, root / name)


def peak_growth(action):
    """Bytes by which the process's resident memory peaked above its start during
    ``action()``, sampled every 0.5 ms on a thread (torch releases the GIL)."""
    process, peak, done = psutil.Process(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.0005)

    before = process.memory_info().rss
    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        action()
    finally:
        done.set()
        sampler.join()
    return peak[0] - before


def measure(backend, members):
    """The peak growth (MB) of one pack's job, in this (fresh) process."""
    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp())
    split = data.digits_tensors(0.25, split_seed=0)
    sizes = {"x_train": 64, "y_train": 64, "x_test": 16, "y_test": 16}
    tensors = {key: value[: sizes[key]] if key in sizes else value for key, value in split.items()}
    data.write_prepared(tensors, root / "d.pt", root / "d.json", "digits", 10)
    settings = {**SETTINGS, "pack_backend": backend}
    job(root, "warm-up", cells(1, width=8), settings)
    return peak_growth(lambda: job(root, "pack", cells(members), settings)) / 1e6


def main():
    if sys.argv[1:2] == ["--one"]:
        print(measure(sys.argv[2], int(sys.argv[3])))
        return
    print("backend\tmembers\twidth\tdepth\tbatch_size\tpeak_growth_mb")
    for backend in ("loop", "packed"):
        for members in (1, 2, 3, 4):
            command = [sys.executable, __file__, "--one", backend, str(members)]
            grown = float(subprocess.run(command, capture_output=True, text=True).stdout)
            print(f"{backend}\t{members}\t{WIDTH}\t{DEPTH}\t{BATCH}\t{grown:.1f}", flush=True)


if __name__ == "__main__":
    main()
