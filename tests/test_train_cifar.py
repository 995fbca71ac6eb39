"""The CIFAR training path: uint8 images on the device, batch augmentation, speed options."""

import functools

import pytest
import torch
from training import train_run

from resdepth import data, models, train

SETTINGS = {
    "optimizer": "sgd",
    "momentum": 0.9,
    "nesterov": True,
    "weight_decay": 5e-4,
    "warmup_epochs": 1,
    "eval_batch_size": 256,
}
FAST = {"bf16": True, "channels_last": True}
CONV = {"stem_stride": 2}

pytestmark = pytest.mark.usefixtures("one_thread")


def colour_classes(n, seed, device="cpu"):
    """CIFAR-shaped uint8 images whose class sets their mean colour: learnable in seconds."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    palette = torch.randint(40, 216, (10, 3, 1, 1), generator=torch.Generator().manual_seed(0))
    noise = torch.randint(-40, 41, (n, 3, 32, 32), generator=g)
    images = (palette[labels] + noise).clamp(0, 255).to(torch.uint8)
    return images.to(device), labels.to(device)


def cifar_like(n_train=320, n_test=160, augment=True, device="cpu"):
    x_train, y_train = colour_classes(n_train, seed=1, device=device)
    x_test, y_test = colour_classes(n_test, seed=2, device=device)
    mean = x_train.float().mean(dim=(0, 2, 3)).view(3, 1, 1)
    std = x_train.float().std(dim=(0, 2, 3)).view(3, 1, 1)
    return data.Prepared(x_train, y_train, x_test, y_test, 10, mean, std, augment=augment)


def cell(**overrides):
    base = dict(dataset="cifar10", arch="conv", depth=3, scaling="inv_sqrt", seed=0)
    base.update(width=8, lr=0.02, epochs=3, batch_size=32)
    return {**base, **overrides}


def test_conv_with_augmentation_and_bf16_learns_on_cpu():
    metrics, history, _ = train_run(cell(), cifar_like(), {**SETTINGS, **FAST}, CONV)
    assert metrics["status"] == "ok" and len(history) == 3
    assert metrics["test_acc"] > 0.5  # chance is 0.1


def test_augmented_training_is_deterministic_and_uses_the_augmentation():
    run = functools.partial(train_run, cell(epochs=1), settings=SETTINGS, arch_options=CONV)
    first, _, model_a = run(data=cifar_like())
    second, _, model_b = run(data=cifar_like())
    plain, _, _ = run(data=cifar_like(augment=False))
    assert first["train_loss"] == second["train_loss"]
    for a, b in zip(model_a.state_dict().values(), model_b.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert plain["train_loss"] != first["train_loss"]


def test_compile_option_compiles_every_branch_into_one_shared_graph(monkeypatch):
    """Dynamo traces the branches for real; the eager backend spares the C++ build."""
    from torch._dynamo.utils import counters

    compiled, real_compile = [], torch.compile

    def compile_eagerly(fn):
        compiled.append(fn)
        return real_compile(fn, backend="eager")

    monkeypatch.setattr(train.torch, "compile", compile_eagerly)
    torch._dynamo.reset()
    counters.clear()
    options = {**SETTINGS, **FAST, "compile": True}
    metrics, _, model = train_run(cell(depth=6, epochs=1), cifar_like(), options, CONV)
    monkeypatch.undo()
    reference = train_run(cell(depth=6, epochs=1), cifar_like(), {**SETTINGS, **FAST}, CONV)
    assert metrics["status"] == "ok"
    assert len(compiled) == 6
    assert counters["stats"]["unique_graphs"] <= 2  # training and evaluation, not 6 of each
    assert list(model.state_dict()) == list(reference[2].state_dict())


def test_cuda_graph_option_changes_nothing_on_a_cpu():
    run = functools.partial(train_run, cell(epochs=1), cifar_like(), arch_options=CONV)
    eager, _, eager_model = run(settings=SETTINGS)
    graphed, _, graphed_model = run(settings={**SETTINGS, "cuda_graph": True})
    assert graphed["train_loss"] == eager["train_loss"]
    for a, b in zip(eager_model.parameters(), graphed_model.parameters(), strict=True):
        assert torch.equal(a, b)


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("speed", ["compile", "cuda_graph"])
def test_short_cifar_job_on_the_gpu_with_speed_options(speed):
    device = torch.device("cuda")
    options = {**SETTINGS, **FAST, speed: True}
    dataset = cifar_like(n_train=2048, n_test=512, device=device)
    metrics, history, model = train_run(
        cell(depth=8, width=32, batch_size=128, epochs=2, lr=0.005), dataset, options, CONV, device
    )
    assert metrics["status"] == "ok" and len(history) == 2
    assert metrics["test_acc"] > 0.5
    assert metrics["device"] == torch.cuda.get_device_name(device)
    assert next(model.parameters()).is_cuda


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("scaling", ["inv_sqrt", "bn", "skipinit"])
def test_cuda_graph_trains_like_the_eager_loop(scaling, monkeypatch):
    """Same losses, weights and BN statistics: the warm-up passes leave no trace, replays
    overwrite (not accumulate) the gradients, and the short last batch runs eagerly."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # fp32 on both sides
    device = torch.device("cuda")
    dataset = cifar_like(n_train=300, n_test=100, device=device)  # 4 batches of 64, then 44
    run = cell(depth=4, width=16, batch_size=64, epochs=2, scaling=scaling)
    eager, eager_history, eager_model = train_run(run, dataset, SETTINGS, CONV, device)
    graphed, graphed_history, graphed_model = train_run(
        run, dataset, {**SETTINGS, "cuda_graph": True}, CONV, device
    )
    assert graphed["status"] == eager["status"] == "ok"
    for a, b in zip(eager_history, graphed_history, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["test_loss"] == pytest.approx(a["test_loss"], rel=1e-4)
    expected = eager_model.state_dict()
    for name, value in graphed_model.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.gpu
@needs_cuda
def test_cuda_graph_step_survives_zero_grad_and_returns_tensors_of_its_own():
    """A ``zero_grad()`` (set_to_none) after capture must not detach the graph's gradients,
    and a replay must not overwrite the loss and logits an earlier call returned."""
    device = torch.device("cuda")
    dataset = cifar_like(n_train=128, n_test=32, device=device)
    torch.manual_seed(0)
    model = models.build_model("conv", (3, 32, 32), 10, 16, 4, "inv_sqrt", **CONV).to(device)
    step = train.TrainStep(model, {"cuda_graph": True}, 64, device)
    batches = [
        (dataset.inputs(dataset.x_train[i : i + 64]), dataset.y_train[i : i + 64]) for i in (0, 64)
    ]
    loss, logits = step(*batches[0])  # capture, then the first replay
    first_loss, first_logits = loss.clone(), logits.clone()
    first_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()  # default set_to_none=True
    second_loss, _ = step(*batches[1])
    assert torch.equal(loss, first_loss) and torch.equal(logits, first_logits)
    assert not torch.equal(second_loss, first_loss)
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads)  # the optimiser still sees every gradient
    assert not all(torch.equal(g, g0) for g, g0 in zip(grads, first_grads, strict=True))
