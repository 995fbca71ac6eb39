"""training.optimizer: SGD (the paper's) or AdamW, a result-defining setting of the one
training loop (train.make_optimizer)."""

import pytest
import torch
from conftest import TRAIN_SETTINGS
from training import train_run

from resdepth import data, models, packed, train
from resdepth.settings import result_settings

ADAMW = {**TRAIN_SETTINGS, "optimizer": "adamw", "betas": [0.8, 0.95], "eps": 1e-6}


def test_adamw_step_is_adam_with_decoupled_weight_decay():
    """Two steps on one float64 parameter against the update written out: moments with
    bias correction, weight decay applied to the weights (not the gradient)."""
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    model = torch.nn.Module()
    model.p = p
    lr, (b1, b2), eps, wd = 0.1, ADAMW["betas"], ADAMW["eps"], ADAMW["weight_decay"]
    optimizer = train.make_optimizer(model, lr, ADAMW)
    assert isinstance(optimizer, torch.optim.AdamW)
    expected, m, v = p.detach().clone(), torch.zeros(3, dtype=torch.float64), 0
    for step, grad in enumerate(
        (torch.tensor([0.3, -1.0, 2.0]), torch.tensor([-0.1, 0.4, 0.0])), start=1
    ):
        p.grad = grad.double()
        optimizer.step()
        m = b1 * m + (1 - b1) * grad.double()
        v = b2 * v + (1 - b2) * grad.double() ** 2
        m_hat, v_hat = m / (1 - b1**step), v / (1 - b2**step)
        expected = expected * (1 - lr * wd) - lr * m_hat / (v_hat.sqrt() + eps)
        torch.testing.assert_close(p.detach(), expected, rtol=1e-15, atol=1e-15)


def test_sgd_stays_the_default_and_unknown_optimizers_are_refused():
    model = torch.nn.Linear(2, 2)
    sgd = train.make_optimizer(model, 0.1, TRAIN_SETTINGS)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"]
    with pytest.raises(ValueError, match="training.optimizer"):
        train.make_optimizer(model, 0.1, {**TRAIN_SETTINGS, "optimizer": "lion"})


def test_the_optimizer_defines_the_result():
    """Changing it (or AdamW's betas, eps) retrains: they are job params."""
    settings = result_settings({**ADAMW, "device": "cpu", "threads": 1})
    assert {"optimizer", "betas", "eps"} <= settings.keys()


@pytest.fixture(scope="module")
def recall():
    torch.set_num_threads(1)
    tensors = data.recall_tensors(2, 4, 4, 512, 256, split_seed=0)
    return data.Prepared(num_classes=4, vocab_size=8, **tensors)


TRANSFORMER = dict(heads=2, activation="gelu", init="fan_in", context=5)


def recall_cell(scaling, seed=0, lr=3e-3):
    return dict(dataset="recall", arch="transformer", depth=2, scaling=scaling, seed=seed) | dict(
        width=16, lr=lr, epochs=6, batch_size=64
    )


def test_a_transformer_learns_recall_with_adamw(recall):
    """The one loop trains a transformer on token ids with AdamW: a 2-block pre-LN model
    learns a 2-pair recall well above chance (1/4) where SGD at the same rate does not
    move."""
    adamw, history, _ = train_run(recall_cell("bn"), recall, {**ADAMW, "weight_decay": 0.0})
    sgd, _, _ = train_run(recall_cell("bn"), recall, TRAIN_SETTINGS)
    assert adamw["status"] == "ok" and adamw["test_acc"] > 0.6, history
    assert sgd["test_acc"] < 0.45


def test_packed_adamw_updates_each_member_as_alone():
    """AdamW is elementwise: one packed step leaves every member's weights where its own
    step alone does (float32 rounding)."""
    alone = []
    for seed, scaling in enumerate(("inv", 0.5)):
        torch.manual_seed(seed)
        alone.append(models.build_model("mlp", (4,), 3, 8, 2, scaling))
    model = packed.PackedResNet(alone)
    x = torch.randn(16, 2, 4, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 3, (16, 2), generator=torch.Generator().manual_seed(1))
    optimizer = train.make_optimizer(model, 0.01, ADAMW)
    packed.member_losses(model(x), y).sum().backward()
    optimizer.step()
    for k, member in enumerate(alone):
        own = train.make_optimizer(member, 0.01, ADAMW)
        torch.nn.functional.cross_entropy(member(x[:, k]), y[:, k]).backward()
        own.step()
        state = model.member_state_dict(k)
        for name, param in member.named_parameters():
            torch.testing.assert_close(state[name], param.detach(), rtol=1e-5, atol=1e-6)
