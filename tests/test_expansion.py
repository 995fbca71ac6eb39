import itertools
import math

import numpy as np
import pytest
import torch
from taylor_reference import nested_jvp_taylor, tower_output
from torch import nn

from resdepth import expansion, models
from resdepth.scalings import NAMED_SCALINGS

KINDS = ("mlp", "conv", "mlp_bn", "conv_bn")
WIDTH = 5  # features (mlp) or channels (conv)


def make_branch(kind, activation="relu"):
    """The branch the models build for ``kind`` (``_bn``: the BatchNorm variant)."""
    builder = models.conv_branch if kind.startswith("conv") else models.mlp_branch
    return builder(WIDTH, batchnorm=kind.endswith("_bn"), activation=activation)


def random_tower(kind, depth, scaling=0.3, seed=0, activation="relu"):
    """A float64 tower in eval mode with non-zero biases and non-trivial BN statistics, so
    that every bias and every BN affine map shows up in the terms."""
    torch.manual_seed(seed)
    branches = [make_branch(kind, activation) for _ in range(depth)]
    tower = models.ResidualTower(branches, scaling).double()
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


#: Relative tolerance of float64 terms computed two ways, relative to each term's own size:
#: round-off (~1e-16) grown by the cancellation among the up to C(n, k) contributions
#: summed into a term (1e-11 seen), so a wrong or zeroed term of any order fails, however
#: small it is.
ROUND_OFF = 1e-10


EPS = torch.finfo(torch.float64).eps


def assert_terms_close(actual, expected, rtol=ROUND_OFF, atol=0.0):
    """Each order's term equal to within ``rtol`` of that term's own largest entry (a
    term that is exactly zero must be exactly zero), or ``atol`` where the reference
    itself is only known to that."""
    assert actual.shape == expected.shape
    for k, (got, want) in enumerate(zip(actual, expected, strict=True)):
        scale = want.abs().max().item()
        error = (got - want).abs().max().item()
        bound = max(rtol * scale, atol)
        assert error <= bound, f"order {k}: error {error:.3g}, term size {scale:.3g}"


def enumeration_round_off(tower, x0):
    """What ``path_terms_by_enumeration`` knows a term to: it takes each module's linear
    part as f̂(v) − f̂(0), so it carries the round-off of the offsets f̂(0) (size ~ the
    module's outputs), absolutely, into terms that may be far smaller."""
    return 1e3 * EPS * max(branch(x0).abs().max().item() for branch in tower.branches)


def assert_difference_close(actual, expected, magnitude, ulps=1e3):
    """A quantity computed as a difference of tensors of size ``magnitude`` (a remainder
    output − Σ terms) is known to round-off of that size, not of its own."""
    bound = ulps * EPS * magnitude.abs().max().item()
    error = (actual - expected).abs().max().item()
    assert error <= bound, f"error {error:.3g} above round-off {bound:.3g}"


def taylor_by_autodiff(tower, x0, order, scales=None):
    """terms[k] = (1/k!) d^k/dt^k x_n(t) at t = 0 for λ_l = t·s_l, by nested jvp, with the
    tower written out independently of the library."""
    scales = tower.scales().detach() if scales is None else scales
    return nested_jvp_taylor(tower_output(tower, x0, scales), order)


@pytest.mark.parametrize("scaling", [0.3, "skipinit"])
@pytest.mark.parametrize("kind", KINDS)
def test_taylor_terms_are_the_derivatives_at_zero(kind, scaling):
    tower, x0 = random_tower(kind, depth=4, scaling=scaling), random_input(kind)
    result = expansion.taylor_terms(tower, x0, order=3)
    assert_terms_close(result.terms, taylor_by_autodiff(tower, x0, order=3))
    output = tower(x0)
    assert_difference_close(result.output, output, output)
    # The remainder against autodiff's terms and the module's own forward pass.
    expected = output - taylor_by_autodiff(tower, x0, order=3).sum(0)
    assert_difference_close(result.remainder, expected, output)


def linear_tower(depth, seed=0):
    """A float64 tower of affine branches: its output is exactly a polynomial of degree
    ``depth`` in t for λ_l = t·s_l, so every term and every remainder is known."""
    torch.manual_seed(seed)
    branches = [nn.Sequential(nn.Linear(WIDTH, WIDTH)) for _ in range(depth)]
    return models.ResidualTower(branches, 1.0).double().eval()


def linear_tower_terms(tower, x0, scales):
    """The order-k terms of an affine tower by enumerating its paths: a path through
    i1 < … < ik is s_ik W_ik … s_i2 W_i2 s_i1 (W_i1 x0 + b_i1), in plain float64 algebra."""
    layers = [branch[0] for branch in tower.branches]
    terms = [x0.clone()] + [torch.zeros_like(x0) for _ in layers]
    for k in range(1, len(layers) + 1):
        for path in itertools.combinations(range(len(layers)), k):
            first = layers[path[0]]
            v = scales[path[0]] * (x0 @ first.weight.T + first.bias)
            for i in path[1:]:
                v = scales[i] * (v @ layers[i].weight.T)
            terms[k] += v
    return torch.stack(terms)


@pytest.mark.parametrize("order", [0, 1, 2, 4])
def test_taylor_remainder_of_a_polynomial_tower_is_its_higher_terms(order):
    """Scales given as Python floats that float32 cannot hold: the expansion must use them
    in float64 (read as float32 they are off by ~1e-8, the output by ~1e-9)."""
    tower, x0 = linear_tower(depth=4), random_input("mlp")
    scales = [0.1, 0.3, 0.7, 1 / 3]
    expected = linear_tower_terms(tower, x0, scales)
    result = expansion.taylor_terms(tower, x0, order, scales=scales)
    assert_terms_close(result.terms, expected[: order + 1])
    assert_difference_close(result.remainder, expected[order + 1 :].sum(0), result.output)
    path = expansion.path_terms(tower, x0, order, scales=scales)  # no masks: the same terms
    assert_terms_close(path.terms, expected[: order + 1])
    assert_terms_close(path.remainder[None], expected[order + 1 :].sum(0)[None])


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
    assert_terms_close(terms[1:], torch.stack([t1, t2]).detach())


@pytest.mark.parametrize("max_order", [0, 1, 3, 6, 9])
@pytest.mark.parametrize("kind", KINDS)
def test_path_terms_sum_to_the_forward_pass(kind, max_order):
    tower, x0 = random_tower(kind, depth=6, scaling=0.7), random_input(kind)
    result = expansion.path_terms(tower, x0, max_order=max_order)
    assert result.terms.shape == (max_order + 1, *x0.shape)
    output = tower(x0)
    assert_difference_close(result.output, output, output)  # Σ_k P_k + tail, propagated
    assert torch.equal(result.terms[0], x0)
    if max_order >= 6:  # every path is counted: no tail, and orders above n are empty
        assert result.remainder.abs().max() < 1e-12
        assert not result.terms[7:].any()


@pytest.mark.parametrize(
    "kind, depth, scaling", [("mlp", 10, 0.4), ("conv", 6, "skipinit"), ("mlp_bn", 7, 1.0)]
)
def test_path_terms_equal_brute_force_path_sums(kind, depth, scaling):
    tower, x0 = random_tower(kind, depth, scaling=scaling, seed=5), random_input(kind)
    brute = expansion.path_terms_by_enumeration(tower, x0)
    output = tower(x0)
    assert_difference_close(brute.sum(0), output, output)  # the reference itself is complete
    atol = enumeration_round_off(tower, x0)
    full = expansion.path_terms(tower, x0, max_order=depth)
    assert_terms_close(full.terms, brute, atol=atol)
    truncated = expansion.path_terms(tower, x0, max_order=2)
    assert_terms_close(truncated.terms, brute[:3], atol=atol)
    assert_terms_close(truncated.remainder[None], brute[3:].sum(0)[None], atol=atol)


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
        assert_terms_close(result.terms, expected)
        rel_norms = result.terms.flatten(1).norm(dim=1) / x0.norm()
        torch.testing.assert_close(rel_norms, binomial, rtol=ROUND_OFF, atol=0)


@pytest.mark.parametrize("scaling", NAMED_SCALINGS)
def test_works_on_built_models_in_eval_mode(scaling):
    torch.manual_seed(0)
    model = models.build_model("mlp", (8, 8), 10, width=8, depth=5, scaling=scaling)
    model = model.double().eval()
    if scaling == "skipinit":  # α = 0 at init would make every term above order 0 vanish
        with torch.no_grad():
            model.tower.alpha.uniform_(-0.5, 0.5)
    x0 = model.stem(torch.randn(4, 8, 8, dtype=torch.float64))
    path = expansion.path_terms(model, x0, max_order=2)
    brute = expansion.path_terms_by_enumeration(model.tower, x0)
    atol = enumeration_round_off(model.tower, x0)
    assert_terms_close(path.terms, brute[:3], atol=atol)
    assert_terms_close(path.remainder[None], brute[3:].sum(0)[None], atol=atol)
    taylor = expansion.taylor_terms(model, x0, order=2)
    assert_terms_close(taylor.terms, taylor_by_autodiff(model.tower, x0, order=2).detach())


def test_batchnorm_in_training_mode_is_rejected():
    tower = random_tower("mlp_bn", depth=2).train()
    with pytest.raises(ValueError, match="eval mode"):
        expansion.path_terms(tower, random_input("mlp_bn"), max_order=1)


def test_unsupported_layer_is_rejected():
    tower = models.ResidualTower([nn.Sequential(nn.Linear(3, 3), nn.Sigmoid())], 0.5)
    with pytest.raises(TypeError, match="Sigmoid"):
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
    assert_terms_close(taylor.terms, expansion.path_terms(tower, x0, 6).terms)
    big = random_tower("mlp", depth=6, scaling=3.0)
    assert 0 < expansion.mask_change_fraction(big, x0) < 1


# --- smooth branches (claim C1's control) -----------------------------------------------


def tanh_derivatives(a, count):
    """tanh and its derivatives of orders 1 .. count − 1 at ``a``, written out (y = tanh a):
    y⁽¹⁾ = 1 − y², y⁽²⁾ = −2y y⁽¹⁾, y⁽³⁾ = (6y² − 2) y⁽¹⁾, y⁽⁴⁾ = (16y − 24y³) y⁽¹⁾."""
    y = torch.tanh(a)
    d1 = 1 - y**2
    return [y, d1, -2 * y * d1, (6 * y**2 - 2) * d1, (16 * y - 24 * y**3) * d1][:count]


def test_smooth_taylor_terms_of_two_branches_are_the_series_of_tanh():
    """x_2 = x_1 + t s2 f2(x_1), x_1 = x0 + t s1 f1(x0), f2 = W2 tanh(W1 x + b1) + b2.
    With a = W1 x0 + b1 and d = W1 s1 f1(x0): tanh(a + t d) = Σ_j tanh⁽ʲ⁾(a) (t d)^j / j!,
    so the order-k term (k ≥ 2) is s2 W2 tanh⁽ᵏ⁻¹⁾(a) d^(k−1) / (k−1)!."""
    tower, x0 = random_tower("mlp", depth=2, activation="tanh", seed=4), random_input("mlp")
    scales = [0.3, 0.7]
    (first, _, last), (inner, _, outer) = tower.branches
    with torch.no_grad():
        f1 = last(torch.tanh(first(x0)))
        a, d = inner(x0), (scales[0] * f1) @ inner.weight.T
        derivatives = tanh_derivatives(a, 5)
        expected = [x0, scales[0] * f1 + scales[1] * outer(derivatives[0])]
        for k in range(2, 6):
            series = derivatives[k - 1] * d ** (k - 1) / math.factorial(k - 1)
            expected.append(scales[1] * series @ outer.weight.T)
        x1 = x0 + scales[0] * f1
        output = x1 + scales[1] * outer(torch.tanh(inner(x1)))
    result = expansion.taylor_terms(tower, x0, order=5, scales=scales)
    assert_terms_close(result.terms, torch.stack(expected), rtol=1e-12)
    assert_difference_close(result.output, output, output)


@pytest.mark.parametrize(
    "kind, activation",
    [("mlp", "tanh"), ("mlp_bn", "gelu"), ("conv", "gelu"), ("conv_bn", "tanh")],
)
def test_smooth_taylor_terms_are_the_derivatives_at_zero(kind, activation):
    tower = random_tower(kind, depth=3, activation=activation, seed=2)
    x0 = random_input(kind)
    result = expansion.taylor_terms(tower, x0, order=3)
    expected = taylor_by_autodiff(tower, x0, order=3).detach()
    assert_terms_close(result.terms, expected)
    output = tower(x0).detach()
    assert_difference_close(result.remainder, output - expected.sum(0), output)


@pytest.mark.parametrize("kind", ["mlp", "conv"])
@pytest.mark.parametrize("order", [1, 2, 3])
def test_smooth_truncation_error_scales_like_lambda_to_the_order_plus_one(kind, order):
    """Claim C1 where its assumptions hold: no masks, so conv towers too."""
    tower = random_tower(kind, depth=6, activation="tanh", seed=7)
    x0 = random_input(kind)
    lambdas = np.geomspace(1e-3, 1e-2, 5)
    errors = [
        expansion.taylor_terms(tower, x0, order, scales=[lam] * 6).remainder.norm()
        for lam in lambdas
    ]
    slope = np.polyfit(np.log(lambdas), np.log(errors), 1)[0]
    assert slope == pytest.approx(order + 1, abs=0.05)


@pytest.mark.parametrize(
    "method",
    [
        lambda t, x: expansion.path_terms(t, x, 1),
        lambda t, x: expansion.mask_change_fraction(t, x),
        lambda t, x: expansion.path_terms_by_enumeration(t, x),
    ],
)
def test_methods_that_need_masks_refuse_smooth_branches(method):
    tower = random_tower("mlp", depth=2, activation="gelu")
    with pytest.raises(ValueError, match="ReLU branches"):
        method(tower, random_input("mlp"))


def test_mask_changes_per_input_sum_to_the_fraction():
    tower, x0 = random_tower("mlp", depth=6, scaling=3.0), random_input("mlp", batch=5)
    changed, units = expansion.mask_changes_per_input(tower, x0)
    assert units == 6 * WIDTH and changed.shape == (5,)
    assert expansion.mask_change_fraction(tower, x0) == changed.sum().item() / (5 * units)
    # one input alone has the same changes as in the batch
    alone, _ = expansion.mask_changes_per_input(tower, x0[2:3])
    assert alone.item() == changed[2].item()
