"""Truncated power series arithmetic (``resdepth.series``) against nested forward-mode
autodiff of the composite function along random polynomial curves t ↦ a(t) = Σ a_k t^k:
the series of f(a(t)) must be its Taylor coefficients at t = 0, at every order."""

import math

import pytest
import torch
from taylor_reference import nested_jvp_taylor

from resdepth import series

pytestmark = pytest.mark.usefixtures("one_thread")

ORDER = 6
#: Per order, relative to the coefficient's largest entry: float64 round-off grown by the
#: recurrences' sums (a wrong or dropped contribution is far above it).
TOLERANCE = 1e-13


def curve(shape, seed, scale=1.0):
    """Coefficients a_0 … a_K of a random polynomial curve, stacked on dim 0."""
    generator = torch.Generator().manual_seed(seed)
    return scale * torch.randn((ORDER + 1, *shape), dtype=torch.float64, generator=generator)


def taylor_by_autodiff(f, *curves):
    """(1/k!) d^k/dt^k f(a(t), b(t), …) at t = 0, k = 0..ORDER, by ORDER nested jvps (one
    pass: each level returns the derivatives below it and one more)."""
    return nested_jvp_taylor(
        lambda t: f(*(polynomial(coefficients, t) for coefficients in curves)), ORDER
    )


def polynomial(coefficients, t):
    """Σ_k c_k t^k (one pow and one contraction: few ops to nest jvps through)."""
    powers = t ** torch.arange(len(coefficients), dtype=t.dtype)
    return torch.tensordot(powers, coefficients, 1)


def assert_series_close(actual, expected, tolerance=TOLERANCE):
    assert actual.shape == expected.shape
    for k, (got, want) in enumerate(zip(actual, expected, strict=True)):
        scale = want.abs().max().item()
        error = (got - want).abs().max().item()
        assert error <= tolerance * scale, f"order {k}: error {error:.3g}, size {scale:.3g}"


def composite_layer_norm(x, weight, bias, eps):
    """LayerNorm from elementary ops (mean, centre, variance, rsqrt): nested jvp through
    ``nn.LayerNorm`` is wrong from the second order on in torch 2.x, so no reference uses it."""
    centred = x - x.mean(-1, keepdim=True)
    return centred * torch.rsqrt((centred * centred).mean(-1, keepdim=True) + eps) * weight + bias


def composite_softmax(x, mask):
    """softmax over the last dim from exp, sum and division, masked entries exactly 0."""
    weights = torch.exp(x - x.detach().amax(-1, keepdim=True)) * mask
    return weights / weights.sum(-1, keepdim=True)


def normal_cdf(x):
    return 0.5 * (1 + torch.erf(x / math.sqrt(2)))


def test_nn_layer_norm_equals_the_composite_reference_in_the_forward_pass():
    x = curve((4, 9), 0)[0]
    norm = torch.nn.LayerNorm(9, eps=1e-3).double()
    with torch.no_grad():
        norm.weight.normal_(1, 0.3)
        norm.bias.normal_(0, 0.3)
        torch.testing.assert_close(
            norm(x), composite_layer_norm(x, norm.weight, norm.bias, 1e-3), rtol=0, atol=4e-15
        )


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(
    "jet, reference",
    [
        (series.exp, torch.exp),
        (series.tanh, torch.tanh),
        (series.normal_cdf, normal_cdf),
        (series.gelu, lambda x: x * normal_cdf(x)),
        (series.gelu, torch.nn.functional.gelu),
        (lambda a: series.product(a, a), lambda x: x * x),
    ],
)
def test_elementwise_functions(jet, reference, seed):
    a = curve((5, 3), seed, scale=0.7)
    assert_series_close(jet(a), taylor_by_autodiff(reference, a))


def test_order_zero_is_the_value():
    a, b = curve((3, 4), 0)[:1], curve((3, 4), 1)[:1].abs() + 0.5
    for jet, value in [
        (series.exp(a), a[0].exp()),
        (series.tanh(a), a[0].tanh()),
        (series.gelu(a), torch.nn.functional.gelu(a[0])),
        (series.divide(a, b), a[0] / b[0]),
        (series.power(b, -0.5), b[0].rsqrt()),
        (series.softmax(a, -1), a[0].softmax(-1)),
        (series.layer_norm(a), torch.nn.functional.layer_norm(a[0], (4,))),
    ]:
        assert jet.shape == (1, 3, 4)
        torch.testing.assert_close(jet[0], value, rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("seed", [0, 1])
def test_division_and_powers(seed):
    a, b = curve((4, 3), seed), curve((4, 3), seed + 10, scale=0.3)
    b[0] = b[0].abs() + 0.5  # b_0 is the divisor, and u_0 > 0 the base of u^r
    assert_series_close(series.divide(a, b), taylor_by_autodiff(torch.div, a, b))
    for r in (-0.5, 1.7):  # LayerNorm's, and a generic one
        assert_series_close(series.power(b, r), taylor_by_autodiff(lambda x: x**r, b))  # noqa: B023


def test_division_broadcasts_like_the_values():
    a, b = curve((2, 3, 4), 0), curve((2, 3, 1), 1, scale=0.3)
    b[0] = b[0].abs() + 0.5
    assert_series_close(series.divide(a, b), taylor_by_autodiff(torch.div, a, b))


def test_product_with_a_bilinear_op_and_with_a_constant():
    a, b = curve((2, 3, 4), 0), curve((2, 4, 5), 1)
    assert_series_close(series.product(a, b, torch.matmul), taylor_by_autodiff(torch.matmul, a, b))
    constant = b[:1]  # one slot: the constant curve b_0
    expected = torch.stack([c @ b[0] for c in a])
    assert_series_close(series.product(a, constant, torch.matmul), expected)
    assert_series_close(series.product(constant.mT, a.mT, torch.matmul), expected.mT)


@pytest.mark.parametrize("seed", [0, 1])
def test_softmax_with_a_causal_mask(seed):
    logits = curve((2, 6, 6), seed)
    mask = torch.ones(6, 6, dtype=torch.bool).tril()
    result = series.softmax(logits, -1, mask=mask)
    assert_series_close(result, taylor_by_autodiff(lambda x: composite_softmax(x, mask), logits))
    assert not result[:, ~mask.expand(2, 6, 6)].any()  # masked weights are 0 at every order
    unmasked = series.softmax(logits, 2)  # a non-negative dim counts the value's dims
    assert_series_close(unmasked, taylor_by_autodiff(lambda x: x.softmax(-1), logits))


@pytest.mark.parametrize("seed", [0, 1])
def test_layer_norm_with_random_affine(seed):
    a = curve((3, 8), seed)
    weight, bias = curve((8,), seed + 5)[:2]
    expected = taylor_by_autodiff(lambda x: composite_layer_norm(x, weight, bias, 0.1), a)
    assert_series_close(series.layer_norm(a, weight, bias, eps=0.1), expected)
    plain = taylor_by_autodiff(lambda x: composite_layer_norm(x, 1, 0, 1e-5), a)
    assert_series_close(series.layer_norm(a), plain)


def test_layer_norm_of_nn_layer_norm_under_nested_jvp_is_wrong():
    """Why no reference uses it: nested jvp through F.layer_norm disagrees with the
    composite LayerNorm from the second order on (torch 2.x). If torch fixes it, this test
    says so, and the composite reference may go."""
    a = curve((3, 8), 0)
    composite = taylor_by_autodiff(lambda x: composite_layer_norm(x, 1, 0, 1e-5), a)
    library = taylor_by_autodiff(lambda x: torch.nn.functional.layer_norm(x, (8,)), a)
    torch.testing.assert_close(library[:2], composite[:2], rtol=1e-12, atol=1e-12)
    assert (library[2] - composite[2]).abs().max() > 1e-3
