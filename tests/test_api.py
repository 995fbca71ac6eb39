"""The notebook API (resdepth.api) on the tiny run's real outputs."""

import shutil

import pandas as pd
import pytest
import torch

import resdepth
from resdepth import expansion

pytestmark = pytest.mark.workflow


def first_trained_run(finished):
    runs = pd.read_csv(finished.path("results/runs.csv"))
    return runs[runs["status"] == "ok"].iloc[0]


def test_load_run_gives_the_trained_model_its_metrics_describe(finished):
    row = first_trained_run(finished)
    run = resdepth.load_run(finished.path(f"results/runs/{row.run_id}"))
    assert run.cell["depth"] == row.depth and run.metrics["run_id"] == row.run_id
    assert list(run.history["epoch"]) == list(range(row.epochs + 1))  # epoch 0: init GC
    with torch.no_grad():
        predicted = run.model(run.data.inputs(run.data.x_test)).argmax(1)
    correct = (predicted == run.data.y_test).sum().item()
    assert correct == round(row.test_acc * len(run.data.y_test))


def test_path_terms_take_model_inputs_and_match_the_pipelines_table(finished):
    """The raw inputs go through the stem (expansion.path_terms alone takes the tower's
    input); the norms are those results/expansion/orders.csv holds for the run."""
    row = first_trained_run(finished)
    run = resdepth.load_run(finished.path(f"results/runs/{row.run_id}"))
    x = run.data.inputs(run.data.x_test[:256])  # the tiny config's expansion.batch_size
    depth = int(row.depth)
    paths = resdepth.path_terms(run.model, x, max_order=depth)
    model = run.model.double()
    with torch.no_grad():
        x0 = model.stem(x.double())
        output = model.tower(x0)
    # Σ_k P_k + the rest is the tower's output, up to float64 round-off.
    assert torch.allclose(paths.output, output, rtol=1e-13, atol=1e-13 * output.abs().max())
    reference = expansion.path_terms(model.tower, x0, depth)
    assert torch.equal(paths.terms, reference.terms)
    orders = pd.read_csv(finished.path("results/expansion/orders.csv"))
    table = orders[
        (orders["run_id"] == row.run_id)
        & (orders["stage"] == "trained")
        & (orders["decomposition"] == "path")
    ].sort_values("order")
    norms = paths.terms.flatten(1).norm(dim=1) / (output - x0).norm()
    assert norms.tolist() == pytest.approx(table["rel_norm"].tolist(), rel=1e-12, abs=0)
    taylor = resdepth.taylor_terms(run.model, x, order=depth)
    assert torch.equal(taylor.terms[0], x0)


def test_a_changed_model_file_is_refused_naming_it(finished, tmp_path):
    row = first_trained_run(finished)
    for part in (f"runs/{row.run_id}", "data"):
        shutil.copytree(finished.path(f"results/{part}"), tmp_path / "results" / part)
    model = tmp_path / "results" / "runs" / row.run_id / "model.pt"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"{model}.*is corrupted"):
        resdepth.load_run(model.parent)
