"""Small synthetic result files, laid out as docs/file-contracts.md says, for fast tests
of aggregation and plotting without training anything."""

import json
import math

import pandas as pd

DEFAULT_CELL = {
    "dataset": "digits",
    "arch": "mlp",
    "width": 64,
    "lr": 0.05,
    "epochs": 3,
    "batch_size": 128,
}


def run_id(cell):
    """The contract's run id for a grid cell."""
    scaling = cell["scaling"]
    scaling = f"lam{scaling:g}" if isinstance(scaling, float) else scaling
    return (
        f"{cell['dataset']}-{cell['arch']}-n{cell['depth']}-{scaling}-w{cell['width']}"
        f"-lr{cell['lr']:g}-e{cell['epochs']}-b{cell['batch_size']}-s{cell['seed']}"
    )


def branch_lambda(scaling, depth):
    """λ of a scaling at a depth as docs/science.md defines it (SkipInit: its α at init, 0)."""
    if isinstance(scaling, float):
        return scaling
    named = {"one": 1.0, "bn": 1.0, "inv_sqrt": depth**-0.5, "inv": 1.0 / depth, "skipinit": 0.0}
    return named[scaling]


def write_run(root, depth, scaling, seed, test_acc=0.9, status="ok", diverged_epoch=2, **settings):
    """Write runs/<run_id>/{metrics.json,history.csv} under ``root``; return metrics' path.

    A diverged run's history holds the epochs before ``diverged_epoch``; its final
    metrics are null.
    """
    cell = {**DEFAULT_CELL, **settings, "depth": depth, "scaling": scaling, "seed": seed}
    folder = root / "runs" / run_id(cell)
    folder.mkdir(parents=True)
    ok = status == "ok"
    epochs = cell["epochs"] if ok else diverged_epoch - 1
    history = pd.DataFrame(
        {
            "epoch": range(1, epochs + 1),
            "step": [14 * e for e in range(1, epochs + 1)],
            "lr": [cell["lr"] * (1 - e / epochs) for e in range(epochs)],
            "train_loss": [2.0 / (e + 1) + 0.01 * seed for e in range(epochs)],
            "train_acc": [min(0.5 + 0.2 * e, 1.0) for e in range(epochs)],
            "test_loss": [2.2 / (e + 1) for e in range(epochs)],
            "test_acc": [test_acc * (e + 1) / epochs if ok else 0.1 for e in range(epochs)],
            "wall_time_s": [0.1 * (e + 1) for e in range(epochs)],
        }
    )
    history.to_csv(folder / "history.csv", index=False)
    metrics = {
        "run_id": folder.name,
        **cell,
        "lambda": branch_lambda(scaling, depth),
        "status": status,
        "diverged_epoch": None if ok else diverged_epoch,
        "diverged_step": None if ok else 14 * diverged_epoch - 7,
        "train_loss": 0.1 if ok else None,
        "train_acc": 0.99 if ok else None,
        "test_loss": 0.2 if ok else None,
        "test_acc": test_acc if ok else None,
        "wall_time_s": 1.5,
        "n_params": 1000 * depth,
        "device": "cpu",
    }
    path = folder / "metrics.json"
    path.write_text(json.dumps(metrics))
    return path


def write_init_norms(path, scalings=("one", "inv_sqrt", "inv"), depths=(1, 10, 100), seeds=(0, 1)):
    """An init_norms.csv where λ=1 explodes like 3^(n/2) and the others stay near 1."""
    rows = []
    for scaling in scalings:
        for depth in depths:
            for seed in seeds:
                growth = 3.0 if scaling == "one" else 1.0 + 2.0 / depth
                log10_rel_norm = depth / 2 * math.log10(growth) + 0.01 * seed
                rows.append(
                    {
                        "dataset": "digits",
                        "arch": "mlp",
                        "width": 64,
                        "depth": depth,
                        "scaling": scaling,
                        "seed": seed,
                        "lambda": 1.0,
                        "rel_norm": 10**log10_rel_norm,
                        "log10_rel_norm": log10_rel_norm,
                    }
                )
    pd.DataFrame(rows).to_csv(path, index=False)
    return path
