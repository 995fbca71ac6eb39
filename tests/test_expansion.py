import math

import numpy as np
import pytest
import torch
from torch import nn

from resdepth import expansion, models
from resdepth.scalings import NAMED_SCALINGS

KINDS = ("mlp", "conv", "mlp_bn", "conv_bn")
WIDTH = 5  # features (mlp) or channels (conv)


def make_branch(kind):
    """The branch the models build for ``kind`` (``_bn``: the BatchNorm variant)."""
    builder = models.conv_branch if kind.startswith("conv") else models.mlp_branch
    return builder(WIDTH, batchnorm=kind.endswith("_bn"))


def random_tower(kind, depth, scaling=0.3, seed=0):
    """A float64 tower in eval mode with non-zero biases and non-trivial BN statistics, so
    that every bias and every BN affine map shows up in the terms."""
    torch.manual_seed(seed)
    tower = models.ResidualTower([make_branch(kind) for _ in range(depth)], scaling).double()
    with torch.no_grad():
        for m in tower.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.normal_(0, 0.3)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.normal_(1, 0.2)
                m.bias.normal_(0, 0.2)
        if scaling == "skipinit":
            tower.alpha.uniform_(-0.5, 0.5)
    return tower.eval()


def random_input(kind, batch=3, seed=1):
    shape = (batch, WIDTH) if kind.startswith("mlp") else (batch, WIDTH, 4, 4)
    return torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def nth_derivative(f, n):
    """d^n f / dt^n by nested forward-mode autodiff (torch.func.jvp)."""
    if n == 0:
        return f
    inner = nth_derivative(f, n - 1)
    return lambda t: torch.func.jvp(inner, (t,), (torch.ones_like(t),))[1]


@pytest.mark.parametrize("scaling", [0.3, "skipinit"])
@pytest.mark.parametrize("kind", KINDS)
def test_taylor_terms_are_the_derivatives_at_zero(kind, scaling):
    tower, x0 = random_tower(kind, depth=4, scaling=scaling), random_input(kind)
    scales = tower.scales().detach()

    def output(t):  # the tower with λ_l = t·s_l, written out independently of the library
        x = x0
        for branch, s in zip(tower.branches, scales, strict=True):
            x = x + t * s * branch(x)
        return x

    result = expansion.taylor_terms(tower, x0, order=3)
    zero = torch.zeros((), dtype=torch.float64)
    for k in range(4):
        expected = nth_derivative(output, k)(zero) / math.factorial(k)
        torch.testing.assert_close(result.terms[k], expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(result.output, tower(x0))
    torch.testing.assert_close(result.terms.sum(0) + result.remainder, tower(x0))


@pytest.mark.parametrize("kind", KINDS)
def test_first_and_second_order_closed_forms(kind):
    """T_1 = Σ s_i f_i(x0) and T_2 = Σ_{i<j} s_i s_j J_{f_j}(x0) f_i(x0) (PAPER.md §2)."""
    tower, x0 = random_tower(kind, depth=5, seed=3), random_input(kind)
    s = tower.scales()
    f = [branch(x0) for branch in tower.branches]
    t1 = sum(s[i] * f[i] for i in range(5))
    t2 = sum(
        s[i] * s[j] * torch.func.jvp(tower.branches[j], (x0,), (f[i],))[1]
        for j in range(5)
        for i in range(j)
    )
    terms = expansion.taylor_terms(tower, x0, order=2).terms
    torch.testing.assert_close(terms[1], t1, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(terms[2], t2, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("max_order", [0, 1, 3, 6, 9])
@pytest.mark.parametrize("kind", KINDS)
def test_path_terms_sum_to_the_forward_pass(kind, max_order):
    tower, x0 = random_tower(kind, depth=6, scaling=0.7), random_input(kind)
    result = expansion.path_terms(tower, x0, max_order=max_order)
    assert result.terms.shape == (max_order + 1, *x0.shape)
    torch.testing.assert_close(result.output, tower(x0), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(result.terms[0], x0)
    torch.testing.assert_close(result.terms.sum(0) + result.remainder, tower(x0))
    if max_order >= 6:  # every path is counted: no tail, and orders above n are empty
        assert result.remainder.abs().max() < 1e-12
        assert not result.terms[7:].any()


@pytest.mark.parametrize(
    "kind, depth, scaling", [("mlp", 10, 0.4), ("conv", 6, "skipinit"), ("mlp_bn", 7, 1.0)]
)
def test_path_terms_equal_brute_force_path_sums(kind, depth, scaling):
    tower, x0 = random_tower(kind, depth, scaling=scaling, seed=5), random_input(kind)
    brute = expansion.path_terms_by_enumeration(tower, x0)
    torch.testing.assert_close(brute.sum(0), tower(x0))  # the reference itself is complete
    full = expansion.path_terms(tower, x0, max_order=depth)
    torch.testing.assert_close(full.terms, brute, rtol=1e-10, atol=1e-12)
    truncated = expansion.path_terms(tower, x0, max_order=2)
    torch.testing.assert_close(truncated.terms, brute[:3], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(truncated.remainder, brute[3:].sum(0), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["mlp", "mlp_bn"])
@pytest.mark.parametrize("order", [1, 2, 3])
def test_taylor_truncation_error_scales_like_lambda_to_the_order_plus_one(kind, order):
    """Claim C1. MLP towers only: the expansion at λ = 0 holds until the first ReLU mask
    flips, and a conv tower's many units flip one already near λ ~ 1e-3, where the order-4
    term is at float64 round-off (the conv terms are checked against autodiff instead)."""
    tower, x0 = random_tower(kind, depth=8, seed=7), random_input(kind)
    lambdas = np.geomspace(1e-3, 1e-2, 6)
    errors = [
        expansion.taylor_terms(tower, x0, order, scales=torch.full((8,), lam)).remainder.norm()
        for lam in lambdas
    ]
    slope = np.polyfit(np.log(lambdas), np.log(errors), 1)[0]
    assert slope == pytest.approx(order + 1, abs=0.3)


def test_identical_linear_modules_give_the_binomial_expansion():
    """x_n = (I + λW)^n x0, so both decompositions are C(n,k) λ^k W^k x0; with W orthogonal
    the per-order norms relative to ||x0|| are exactly C(n,k) λ^k."""
    n = 12
    torch.manual_seed(0)
    w = torch.linalg.qr(torch.randn(WIDTH, WIDTH, dtype=torch.float64))[0]
    branches = [nn.Linear(WIDTH, WIDTH, bias=False).double() for _ in range(n)]
    for branch in branches:
        branch.weight.data.copy_(w)
    tower = models.ResidualTower(branches, 0.3).double()
    lam = tower.scales()[0].item()  # 0.3 as stored (float32, then widened)
    x0 = random_input("mlp", batch=4)
    binomial = torch.tensor([math.comb(n, k) * lam**k for k in range(n + 1)], dtype=torch.float64)
    powers = [torch.linalg.matrix_power(w.T, k) for k in range(n + 1)]  # rows: x0 @ W^T^k
    expected = torch.stack([binomial[k] * x0 @ powers[k] for k in range(n + 1)])
    for result in (
        expansion.taylor_terms(tower, x0, order=n),
        expansion.path_terms(tower, x0, max_order=n),
    ):
        torch.testing.assert_close(result.terms, expected, rtol=1e-10, atol=1e-12)
        rel_norms = result.terms.flatten(1).norm(dim=1) / x0.norm()
        torch.testing.assert_close(rel_norms, binomial, rtol=1e-10, atol=0)


@pytest.mark.parametrize("arch", ["mlp"])
@pytest.mark.parametrize("scaling", NAMED_SCALINGS)
def test_works_on_built_models_in_eval_mode(arch, scaling):
    torch.manual_seed(0)
    model = models.build_model(arch, (8, 8), 10, width=8, depth=5, scaling=scaling)
    model = model.double().eval()
    x0 = model.stem(torch.randn(4, 8, 8, dtype=torch.float64))
    result = expansion.path_terms(model, x0, max_order=2)
    torch.testing.assert_close(result.terms.sum(0) + result.remainder, model.tower(x0))
    taylor = expansion.taylor_terms(model, x0, order=2)
    torch.testing.assert_close(taylor.output, model.tower(x0))


def test_batchnorm_in_training_mode_is_rejected():
    tower = random_tower("mlp_bn", depth=2).train()
    with pytest.raises(ValueError, match="eval mode"):
        expansion.path_terms(tower, random_input("mlp_bn"), max_order=1)


def test_unsupported_layer_is_rejected():
    tower = models.ResidualTower([nn.Sequential(nn.Linear(3, 3), nn.Tanh())], 0.5)
    with pytest.raises(TypeError, match="Tanh"):
        expansion.taylor_terms(tower, torch.randn(2, 3), order=1)


@pytest.mark.parametrize("order", [-1, 1.5])
def test_bad_order_is_rejected(order):
    with pytest.raises(ValueError, match="order"):
        expansion.taylor_terms(random_tower("mlp", 2), random_input("mlp"), order=order)


def test_wrong_number_of_scales_is_rejected():
    with pytest.raises(ValueError, match="one scale per branch"):
        expansion.path_terms(random_tower("mlp", 3), random_input("mlp"), 1, scales=[0.1, 0.2])


def test_without_mask_changes_taylor_and_path_terms_coincide():
    tower, x0 = random_tower("mlp", depth=6, scaling=1e-3), random_input("mlp")
    assert expansion.mask_change_fraction(tower, x0) == 0
    taylor = expansion.taylor_terms(tower, x0, order=6)
    torch.testing.assert_close(taylor.terms, expansion.path_terms(tower, x0, 6).terms)
    big = random_tower("mlp", depth=6, scaling=3.0)
    assert 0 < expansion.mask_change_fraction(big, x0) < 1
