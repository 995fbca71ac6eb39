import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import TRAIN_SETTINGS, optimizer_hooks
from training import train_run

from resdepth import grid, packs

SETTINGS = TRAIN_SETTINGS
STEPS_PER_EPOCH = 11  # ceil(1347 digits in the train split / batch 128); the last has 67

pytestmark = pytest.mark.usefixtures("one_thread")


def cell(**overrides):
    base = dict(dataset="digits", arch="mlp", depth=4, scaling="inv_sqrt", seed=0)
    base.update(width=64, lr=0.05, epochs=8, batch_size=128)
    return {**base, **overrides}


def test_short_digits_run_learns(digits):
    metrics, history, _ = train_run(cell(), digits, SETTINGS, device=torch.device("cpu"))
    assert metrics["status"] == "ok"
    assert metrics["test_acc"] > 0.90
    assert [row["epoch"] for row in history] == list(range(1, 9))
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_training_is_deterministic_given_the_seed(digits):
    c = cell(epochs=2, depth=3)
    first, _, model_a = train_run(c, digits, SETTINGS)
    second, _, model_b = train_run(c, digits, SETTINGS)
    third, _, _ = train_run({**c, "seed": 1}, digits, SETTINGS)
    assert first["test_loss"] == second["test_loss"]
    for a, b in zip(model_a.state_dict().values(), model_b.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert third["test_loss"] != first["test_loss"]


def test_deep_lambda_one_tower_is_recorded_as_diverged(digits):
    metrics, history, _ = train_run(cell(depth=200, scaling="one", epochs=3), digits, SETTINGS)
    assert metrics["status"] == "diverged"
    assert metrics["diverged_epoch"] == 1 and metrics["diverged_step"] >= 1
    assert metrics["test_acc"] is None and history == []


def tiny_cell(**overrides):
    """A model small enough that a three-epoch run takes a fraction of a second."""
    return cell(**{"depth": 2, "width": 16, "epochs": 3, **overrides})


def optimizer_steps(run):
    """``run()`` with every optimiser step recorded: the param groups' hyperparameters,
    and each parameter and gradient before the step and each parameter after it."""
    steps = []

    def parameters(optimizer):
        return [p.detach().clone() for group in optimizer.param_groups for p in group["params"]]

    def before(optimizer):
        groups = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
        grads = [p.grad.clone() for group in optimizer.param_groups for p in group["params"]]
        steps.append({"groups": groups, "before": parameters(optimizer), "grads": grads})

    def after(optimizer):
        steps[-1]["after"] = parameters(optimizer)

    with optimizer_hooks(before, after):
        result = run()
    return steps, result


def closed_form_lr(step, base_lr, epochs, warmup_epochs):
    """The schedule as documented: linear warm-up over ``warmup_epochs`` epochs *of steps*
    reaching ``base_lr`` on its last step, then a cosine to 0 at the end of training."""
    warmup = round(warmup_epochs * STEPS_PER_EPOCH)
    total = epochs * STEPS_PER_EPOCH
    if step < warmup:
        return base_lr * (step + 1) / warmup
    return base_lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))


@pytest.fixture(scope="module")
def recorded_run(digits):
    """A tiny run with weight decay strong enough to see in every step, and a warm-up of
    more than one epoch (so that epochs and steps cannot be confused), every step recorded."""
    settings = {**SETTINGS, "weight_decay": 0.01, "warmup_epochs": 2}
    steps, _ = optimizer_steps(lambda: train_run(tiny_cell(), digits, settings))
    return settings, steps


def test_lr_of_every_step_is_the_warmup_then_cosine_closed_form(recorded_run):
    settings, steps = recorded_run
    base_lr, epochs = tiny_cell()["lr"], tiny_cell()["epochs"]
    assert len(steps) == epochs * STEPS_PER_EPOCH
    used = [group["lr"] for step in steps for group in step["groups"]]
    warmup = settings["warmup_epochs"]
    expected = [closed_form_lr(k, base_lr, epochs, warmup) for k in range(len(used))]
    assert used == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert max(used) == base_lr == used[round(warmup * STEPS_PER_EPOCH) - 1]  # end of warm-up


def test_every_step_is_sgd_with_nesterov_momentum_and_weight_decay(recorded_run):
    """Each parameter moves as torch's SGD documents it, from the gradient the step saw,
    with the configured momentum, Nesterov flag and weight decay (here 2-25 % of the
    gradient's norm: a step that ignored it is off by far more than float32 round-off)."""
    settings, steps = recorded_run
    momentum, decay = settings["momentum"], settings["weight_decay"]
    assert settings["nesterov"]
    buffers = None
    for k, step in enumerate(steps):
        (group,) = step["groups"]
        directions = [g + decay * p for g, p in zip(step["grads"], step["before"], strict=True)]
        if buffers is None:
            buffers = directions
        else:
            buffers = [momentum * b + d for b, d in zip(buffers, directions, strict=True)]
        for i, (d, b) in enumerate(zip(directions, buffers, strict=True)):
            expected = step["before"][i] - group["lr"] * (d + momentum * b)
            torch.testing.assert_close(
                step["after"][i], expected, rtol=1e-5, atol=1e-7, msg=f"step {k}, tensor {i}"
            )


def test_test_metrics_are_those_of_the_eval_mode_model_on_the_test_split(digits):
    """With BatchNorm, a model evaluated in training mode (batch statistics) or on the
    training split reports other numbers than the model it returns."""
    metrics, history, model = train_run(tiny_cell(scaling="bn"), digits, SETTINGS)
    with torch.no_grad():
        logits = model.eval()(digits.x_test)
    loss = F.cross_entropy(logits, digits.y_test).item()
    accuracy = (logits.argmax(1) == digits.y_test).sum().item() / len(digits.y_test)
    assert metrics["test_loss"] == pytest.approx(loss, rel=1e-5)
    assert metrics["test_acc"] == accuracy
    assert (history[-1]["test_loss"], history[-1]["test_acc"]) == (
        metrics["test_loss"],
        metrics["test_acc"],
    )


def test_the_test_split_leaves_no_trace_in_the_trained_model(digits):
    """Evaluating must not train: another test set gives the same weights and BatchNorm
    statistics, bit for bit (evaluation in training mode would update the statistics)."""
    noise = torch.randn(digits.x_test.shape, generator=torch.Generator().manual_seed(0))
    other = dataclasses.replace(digits, x_test=3 * noise + 1)
    c = tiny_cell(scaling="bn", epochs=2)
    metrics, _, model = train_run(c, digits, SETTINGS)
    other_metrics, _, other_model = train_run(c, other, SETTINGS)
    assert other_metrics["test_loss"] != metrics["test_loss"]
    assert other_metrics["train_loss"] == metrics["train_loss"]
    state, other_state = model.state_dict(), other_model.state_dict()
    assert all(torch.equal(state[k], other_state[k]) for k in state)


@pytest.mark.parametrize("bad_step", [12, 16, 33])  # epoch 2's first, mid-epoch 2, the last
def test_divergence_is_recorded_at_the_first_non_finite_step(digits, bad_step):
    """Weights turned to NaN after step ``bad_step`` - 1 make step ``bad_step``'s loss the
    first non-finite one (steps and epochs count from 1)."""
    steps_done = 0

    def poison(optimizer):
        nonlocal steps_done
        steps_done += 1
        if steps_done == bad_step - 1:
            with torch.no_grad():
                for group in optimizer.param_groups:
                    for p in group["params"]:
                        p.fill_(math.nan)

    with optimizer_hooks(after=poison):
        metrics, history, _ = train_run(tiny_cell(), digits, SETTINGS)
    epoch = math.ceil(bad_step / STEPS_PER_EPOCH)
    assert metrics["status"] == "diverged"
    assert (metrics["diverged_epoch"], metrics["diverged_step"]) == (epoch, bad_step)
    assert [row["epoch"] for row in history] == list(range(1, epoch))
    assert metrics["test_acc"] is None


def test_run_id_is_readable_and_unique():
    a = grid.run_id(cell())
    assert a == "digits-mlp-n4-inv_sqrt-w64-lr0.05-e8-b128-s0"
    assert grid.run_id(cell(scaling=0.1)) == "digits-mlp-n4-lam0.1-w64-lr0.05-e8-b128-s0"
    runs = grid.training_runs(
        {
            "datasets": {"digits": {}},
            "grid": {k: [v] if k != "depth" else [2, 8] for k, v in cell().items()},
        }
    )
    assert len(runs) == 2 and all(grid.run_id(c) == rid for rid, c in runs.items())


def test_missing_dataset_section_is_named():
    config = {"datasets": {}, "grid": {k: [v] for k, v in cell().items()}}
    with pytest.raises(ValueError, match="datasets.digits"):
        grid.training_runs(config)


RESOURCE_CONFIG = {"training": {"device": "cpu", "threads": 1}, "arch_options": {}}


def test_resources_grow_with_depth():
    config = RESOURCE_CONFIG
    shallow = packs.pack_resources([cell(depth=10)], config)
    deep = packs.pack_resources([cell(depth=1000)], config)
    assert deep["mem_mb"] > shallow["mem_mb"] and deep["runtime"] > shallow["runtime"]
    assert math.isfinite(deep["runtime"])


def test_retry_after_running_out_of_memory_gets_more_memory_not_more_time():
    first = packs.pack_resources([cell()], RESOURCE_CONFIG, attempt=1)
    retry = packs.pack_resources([cell()], RESOURCE_CONFIG, attempt=2)
    assert retry["mem_mb"] == 2 * first["mem_mb"] and retry["runtime"] == first["runtime"]
