"""What every rule entry point needs: logging into the job's ``log:`` file, and
writing results so that a crash never leaves a half-written file behind."""

import csv
import json
import logging
import os
import sys
from pathlib import Path


def log_to(path):
    """Send library log lines and uncaught errors of this job to its ``log:`` file."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    stream = open(path, "a", buffering=1)  # noqa: SIM115 - lives as long as the job
    logging.basicConfig(
        stream=stream, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", force=True
    )
    sys.stderr = stream


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


def save_weights(model, path):
    import torch  # here, not at the top: table and plot jobs should not pay for torch

    _atomic(path, lambda p: torch.save(model.state_dict(), p))
