"""What every rule entry point needs: logging into the job's ``log:`` file, and
writing results so that a crash never leaves a half-written file behind."""

import csv
import json
import logging
import os
import sys
import traceback
from pathlib import Path


def log_to(path):
    """Send library log lines and uncaught errors of this job to its ``log:`` file; an
    uncaught error's message also goes to the console, where Snakemake would otherwise
    show only "Error in rule ..., check log file(s)"."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    stream = open(path, "a", buffering=1)  # noqa: SIM115 - lives as long as the job
    logging.basicConfig(
        stream=stream, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", force=True
    )
    console, sys.stderr = sys.stderr, stream

    def report(kind, error, trace):
        traceback.print_exception(kind, error, trace)  # the whole traceback, in the log
        print(f"{kind.__name__}: {error} (traceback in {path})", file=console, flush=True)

    sys.excepthook = report


def _atomic(path, write):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def write_json(obj, path):
    """Strict JSON: NaN or ±inf is refused (json.dumps would write the invalid ``NaN``)."""
    try:
        text = json.dumps(obj, indent=2, allow_nan=False)
    except ValueError as error:
        raise ValueError(f"{path}: {error}: {obj}") from error
    _atomic(path, lambda p: p.write_text(text + "\n"))


def write_csv(rows, path, columns):
    def write(p):
        with open(p, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)

    _atomic(path, write)


def save_array(array, path):
    """A numpy array as ``.npy`` (no pickle: readable by ``np.load`` with its defaults)."""
    import numpy as np

    def write(p):
        with open(p, "wb") as f:
            np.save(f, array, allow_pickle=False)

    _atomic(path, write)


def save_weights(model, path):
    import torch  # here, not at the top: table and plot jobs should not pay for torch

    _atomic(path, lambda p: torch.save(model.state_dict(), p))


def load_weights(path, metrics, device="cpu"):
    """The state dict in a run's ``model.pt``, checked against the ``model_sha256`` its
    ``metrics.json`` (``metrics``, a dict) recorded: a changed byte is an error, not a
    silently different network."""
    import torch

    from resdepth.data import sha256

    if sha256(path) != metrics["model_sha256"]:
        run_id = Path(path).parent.name
        raise ValueError(
            f"{path} is corrupted (its sha256 differs from model_sha256 in the run's "
            f"metrics.json); delete results/runs/{run_id} and "
            f"results/checkpoints/{run_id}.finished, then rerun the workflow to train it again"
        )
    return torch.load(path, map_location=device, weights_only=True)
