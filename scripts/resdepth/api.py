"""A small API for notebooks: a finished run's files as Python objects, and the residual
expansion of a model taken on the inputs the model itself takes.

The pipeline's own modules work on the pieces (``expansion`` on a tower and its input
x_0 = stem(x)); these functions put the pieces together the way the pipeline does, so a
notebook needs one call where it needed six::

    run = resdepth.load_run("results/runs/<run_id>")
    x = run.data.inputs(run.data.x_test[:256])
    paths = resdepth.path_terms(run.model, x, max_order=4)
"""

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from resdepth import data, expansion, expansion_study, grid, jobs
from resdepth.data import Prepared
from resdepth.models import ResNet


@dataclass
class Run:
    """One training run as ``results/runs/<run_id>/`` and ``results/data/`` hold it."""

    cell: dict  # the grid cell: dataset, arch, depth, scaling, seed, width, lr, epochs, batch
    metrics: dict  # metrics.json: status, final accuracy and loss, provenance, ...
    history: pd.DataFrame  # history.csv: one row per epoch (epoch 0: GC at initialisation)
    model: ResNet  # the trained weights, checked against model_sha256, in eval mode
    data: Prepared  # the data set it trained on, checked against its manifest


def load_run(run_dir, device="cpu"):
    """The run in ``run_dir`` (``results/runs/<run_id>``), model and data on ``device``.

    The model is rebuilt as training built it (``expansion_study.fresh_model``) and given
    the weights of ``model.pt``, which must match the ``model_sha256`` of ``metrics.json``
    (a changed byte is an error naming the file). A diverged run's ``model`` holds the
    weights of the epoch it diverged in: check ``metrics["status"]``.
    """
    run_dir = Path(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    cell = {key: metrics[key] for key in grid.CELL_KEYS}
    results = run_dir.parents[1]  # results/runs/<run_id> -> results
    dataset = data.load_prepared(results / "data" / f"{cell['dataset']}.pt", device)
    arch_options = metrics["provenance"]["arch_options"]
    model = expansion_study.fresh_model(
        cell, dataset.input_shape, dataset.num_classes, arch_options
    ).to(device)
    model.load_state_dict(jobs.load_weights(run_dir / "model.pt", metrics, device))
    history = pd.read_csv(run_dir / "history.csv")
    return Run(cell, metrics, history, model.eval(), dataset)


def _tower_and_input(model, x, dtype):
    """A copy of ``model`` in ``dtype`` and eval mode, and its tower's input stem(x)."""
    model = copy.deepcopy(model).to(dtype).eval()
    with torch.no_grad():
        return model.tower, model.stem(x.to(dtype))


def path_terms(model, x, max_order, dtype=torch.float64):
    """Path terms P_0..P_K of ``model``'s tower on model inputs ``x`` (through its stem,
    as ``model(x)`` sees them), in ``dtype`` (float64 by default, as the pipeline's
    tables): an ``expansion.Expansion`` whose ``output`` is the tower's x_n."""
    tower, x0 = _tower_and_input(model, x, dtype)
    return expansion.path_terms(tower, x0, max_order)


def taylor_terms(model, x, order, dtype=torch.float64):
    """Taylor terms λ^k T_k (k ≤ ``order``) of ``model``'s tower at λ = 0 on model
    inputs ``x``, as ``path_terms`` takes them."""
    tower, x0 = _tower_and_input(model, x, dtype)
    return expansion.taylor_terms(tower, x0, order)
