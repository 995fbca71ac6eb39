import pytest
import torch
from conftest import TRAIN_SETTINGS
from torch import nn
from training import train_run

from resdepth import complexity, models
from resdepth.complexity import geometric_complexity


def small_tower(scaling="inv_sqrt", depth=4, seed=0):
    torch.manual_seed(seed)
    return models.build_model("mlp", (3, 4), 5, width=16, depth=depth, scaling=scaling).double()


def test_linear_model_gc_is_squared_frobenius_norm_of_weights():
    torch.manual_seed(0)
    linear = nn.Linear(7, 3).double()
    x = torch.randn(11, 7, dtype=torch.float64)
    estimate = geometric_complexity(linear, x, method="exact", chunk_size=4)
    assert estimate.value == pytest.approx(linear.weight.pow(2).sum().item(), rel=1e-12)
    assert estimate.stderr == 0.0
    assert estimate.n_inputs == 11


@pytest.mark.parametrize(
    "arch, input_shape, scaling, options",
    [("mlp", (3, 4), "inv_sqrt", {}), ("conv", (3, 6, 6), "bn", {"stem_stride": 2})],
)
def test_exact_gc_matches_per_input_autograd_jacobians(arch, input_shape, scaling, options):
    """GC averages the per-input Jacobians, not the Jacobian of the batch."""
    torch.manual_seed(0)
    model = models.build_model(arch, input_shape, 5, 8, 3, scaling, **options).double().eval()
    x = torch.randn(6, *input_shape, dtype=torch.float64)
    per_input = [
        torch.autograd.functional.jacobian(lambda xi: model(xi.unsqueeze(0)), xi).pow(2).sum()
        for xi in x
    ]
    expected = torch.stack(per_input).mean().item()
    assert geometric_complexity(model, x, chunk_size=4).value == pytest.approx(expected, rel=1e-10)


def test_hutchinson_agrees_with_exact_within_three_standard_errors():
    model = small_tower(depth=6)
    x = torch.randn(64, 3, 4, dtype=torch.float64)
    exact = geometric_complexity(model, x, method="exact")
    estimate = geometric_complexity(
        model,
        x,
        method="hutchinson",
        probes=8,
        chunk_size=20,
        generator=torch.Generator().manual_seed(0),
    )
    assert estimate.stderr > 0
    assert estimate.stderr < 0.2 * exact.value  # the error bar itself is informative
    assert abs(estimate.value - exact.value) < 3 * estimate.stderr


def test_hutchinson_standard_error_matches_its_closed_form():
    """A linear map has the same Jacobian W at every input, and ||Wᵀv||² = vᵀ(WWᵀ)v has
    variance 2·tr((WWᵀ)²) for v ~ N(0, I): N inputs × P probes are N·P independent draws,
    so the standard error of their mean is sqrt(2·tr((WWᵀ)²) / (N·P)). The estimate's
    sample variances over 4000 inputs pin it to a few percent; a factor √P or √N is far off."""
    torch.manual_seed(0)
    linear = nn.Linear(7, 3).double()
    n_inputs, probes = 4000, 4
    x = torch.randn(n_inputs, 7, dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    estimate = geometric_complexity(linear, x, "hutchinson", probes=probes, generator=generator)
    gram = linear.weight @ linear.weight.T
    stderr = (2 * (gram @ gram).trace() / (n_inputs * probes)).sqrt().item()
    assert estimate.stderr == pytest.approx(stderr, rel=0.05)
    assert abs(estimate.value - linear.weight.pow(2).sum().item()) < 4 * stderr


def test_hutchinson_is_reproducible_with_a_generator():
    model = small_tower()
    x = torch.randn(8, 3, 4, dtype=torch.float64)

    def run(seed):
        generator = torch.Generator().manual_seed(seed)
        return geometric_complexity(model, x, "hutchinson", probes=4, generator=generator)

    assert run(1) == run(1)
    assert run(1).value != run(2).value


def test_gc_uses_eval_mode_and_restores_train_mode():
    model = small_tower(scaling="bn")
    x = torch.randn(16, 3, 4, dtype=torch.float64)
    model.train()
    with torch.no_grad():  # make running statistics differ from the batch statistics
        for _ in range(3):
            model(torch.randn(32, 3, 4, dtype=torch.float64) * 3 + 1)
    model.tower.branches[0].eval()  # a mixed-mode model must come back mixed
    expected = geometric_complexity(model.eval(), x).value
    model.train()
    model.tower.branches[0].eval()
    got = geometric_complexity(model, x).value
    assert got == pytest.approx(expected, rel=1e-12)
    assert model.training and model.tower.training
    assert not model.tower.branches[0].training
    assert model.tower.branches[1].training


@pytest.mark.parametrize("method", ["exact", "hutchinson"])
def test_gc_changes_neither_parameters_nor_gradients_nor_buffers(method):
    model = small_tower(scaling="bn")
    model.train()
    x = torch.randn(8, 3, 4, dtype=torch.float64)
    model(x).sum().backward()  # every parameter now has a .grad
    model.head.bias.grad = None  # and one has none
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads = {k: None if p.grad is None else p.grad.clone() for k, p in model.named_parameters()}

    geometric_complexity(model, x, method=method, probes=3)

    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    for k, p in model.named_parameters():
        if grads[k] is None:
            assert p.grad is None, k
        else:
            assert torch.equal(p.grad, grads[k]), k


def test_gc_works_under_no_grad():
    model = small_tower()
    x = torch.randn(5, 3, 4, dtype=torch.float64)
    expected = geometric_complexity(model, x).value
    with torch.no_grad():
        assert geometric_complexity(model, x).value == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"method": "jvp"}, "unknown GC method"),
        ({"method": "hutchinson", "probes": 1}, "probes >= 2"),
        ({"chunk_size": 0}, "chunk_size"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, match):
    model = small_tower()
    with pytest.raises(ValueError, match=match):
        geometric_complexity(model, torch.randn(2, 3, 4, dtype=torch.float64), **kwargs)


# --- GC through training -------------------------------------------------------------

SETTINGS = TRAIN_SETTINGS
GC_EVERY_2 = {"every": 2, "inputs": 64, "method": "exact", "probes": 8, "chunk_size": 256}


def digits_cell(**overrides):
    base = dict(dataset="digits", arch="mlp", depth=3, scaling="inv_sqrt", seed=0)
    base.update(width=16, lr=0.05, epochs=5, batch_size=128)
    return {**base, **overrides}


def test_gc_is_recorded_at_init_every_k_epochs_and_at_the_end(digits):
    _, history, model = train_run(digits_cell(), digits, {**SETTINGS, "gc": GC_EVERY_2})
    assert [row["epoch"] for row in history] == [0, 1, 2, 3, 4, 5]
    assert [row["epoch"] for row in history if "gc" in row] == [0, 2, 4, 5]
    assert all(row["gc"] > 0 and row["gc_stderr"] == 0 for row in history if "gc" in row)
    assert all(row["logit_var"] > 0 for row in history if "gc" in row)  # recorded with GC
    final = geometric_complexity(model, digits.x_train[:64]).value
    assert history[-1]["gc"] == pytest.approx(final, rel=1e-6)


def test_gc_tracking_does_not_change_training(digits):
    hutchinson = {**GC_EVERY_2, "every": 1, "method": "hutchinson", "probes": 2}
    plain, _, model_plain = train_run(digits_cell(epochs=2), digits, SETTINGS)
    tracked, _, model_tracked = train_run(
        digits_cell(epochs=2), digits, {**SETTINGS, "gc": hutchinson}
    )
    assert tracked["test_loss"] == plain["test_loss"]
    plain_state, tracked_state = model_plain.state_dict(), model_tracked.state_dict()
    assert all(torch.equal(plain_state[k], tracked_state[k]) for k in plain_state)


@pytest.mark.parametrize("gc_settings", [None, {**GC_EVERY_2, "every": 0}])
def test_gc_tracking_off_does_no_gc_work(digits, monkeypatch, gc_settings):
    def forbidden(*args, **kwargs):
        raise AssertionError("GC measured although tracking is off")

    monkeypatch.setattr(complexity, "geometric_complexity", forbidden)
    settings = SETTINGS if gc_settings is None else {**SETTINGS, "gc": gc_settings}
    _, history, _ = train_run(digits_cell(epochs=2), digits, settings)
    assert [row["epoch"] for row in history] == [1, 2]
    assert not any("gc" in row for row in history)


@pytest.mark.parametrize("scaling", ["one", "bn"])
def test_gc_of_token_inputs_is_taken_with_respect_to_their_embeddings(scaling):
    """Token ids have no derivative: GC is that of x0 ↦ head(tower(x0)) at the embeddings,
    per input, and changes neither the model nor its gradients."""
    torch.manual_seed(0)
    options = dict(vocab_size=11, heads=2, activation="gelu", init="fan_in", context=7)
    model = models.build_model("transformer", (7,), 5, 8, 2, scaling, **options).double()
    ids = torch.randint(11, (6, 7))
    with torch.no_grad():
        x0 = model.stem(ids)

    def logits(x):
        return model.head(model.tower(x.unsqueeze(0)))

    per_input = [torch.autograd.functional.jacobian(logits, x).pow(2).sum() for x in x0]
    expected = torch.stack(per_input).mean().item()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    estimate = geometric_complexity(model, ids, chunk_size=4)
    assert estimate.value == pytest.approx(expected, rel=1e-10)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("arch, shape, options", [("mlp", (8, 8), {}), ("conv", (3, 8, 8), {})])
def test_gc_over_the_logits_variance_is_scale_free(arch, shape, options):
    """Scaling the logits by c (the head's weight and bias) multiplies GC and the logits'
    variance by c² each: their ratio stays, to float64 round-off."""
    torch.manual_seed(0)
    model = models.build_model(arch, shape, 10, 8, 3, "inv", **options).double()
    x = torch.randn(12, *shape, dtype=torch.float64)
    gc = geometric_complexity(model, x).value
    spread = complexity.logit_spread(model, x)["logit_var"]
    head = [m for m in model.head.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        head.weight.mul_(7.0)
        head.bias.mul_(7.0)
    scaled_gc = geometric_complexity(model, x).value
    scaled_spread = complexity.logit_spread(model, x)["logit_var"]
    assert scaled_gc == pytest.approx(49 * gc, rel=1e-12)
    assert scaled_spread == pytest.approx(49 * spread, rel=1e-12)
    assert scaled_gc / scaled_spread == pytest.approx(gc / spread, rel=1e-12)
    # by hand: the mean over classes of each logit's variance over the inputs
    with torch.no_grad():
        logits = model.eval()(x)
    expected = ((logits - logits.mean(0)) ** 2).sum(0).div(len(x) - 1).mean().item()
    assert scaled_spread == pytest.approx(expected, rel=1e-12)
