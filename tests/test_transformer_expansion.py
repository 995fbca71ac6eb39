"""Exact expansion terms of transformer towers (float64, CPU): Taylor terms against nested
forward-mode autodiff of a composite-LayerNorm copy of the model and against Richardson-
extrapolated finite differences; closed forms; causality; frozen path terms against the
real forward pass, against 2^n enumeration and against Elhage et al.'s direct, head and
virtual-head terms; the composition split; the radius estimates."""

import math

import pytest
import torch
from taylor_reference import (
    nested_jvp_taylor,
    richardson_taylor,
    tower_output,
    with_composite_layer_norms,
)
from torch import nn

from resdepth import expansion, models

pytestmark = pytest.mark.usefixtures("one_thread")

WIDTH, HEADS, T, VOCAB = 8, 2, 4, 10
EPS = torch.finfo(torch.float64).eps
#: Per order, relative to the term's largest entry: round-off (measured ≤ 1e-14) with room.
TOLERANCE = 1e-12


def random_transformer(norm="pre_ln", blocks=2, activation="gelu", seed=0, scaling="one"):
    """A float64 transformer whose every bias and LayerNorm γ, β is random (non-zero), so
    that each shows up in the terms, and its stream x0 on random tokens (batch 2)."""
    torch.manual_seed(seed)
    model = models.build_model(
        "transformer",
        (T,),
        3,
        WIDTH,
        blocks,
        scaling,
        vocab_size=VOCAB,
        heads=HEADS,
        norm=norm,
        activation=activation,
    )
    model = model.double().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.normal_(1, 0.3)
                m.bias.normal_(0, 0.3)
            if isinstance(m, nn.Linear):
                m.bias.normal_(0, 0.3)
    return model, model.stem(tokens(seed + 1)).detach()


def tokens(seed, batch=2):
    return torch.randint(0, VOCAB, (batch, T), generator=torch.Generator().manual_seed(seed))


def spread_scales(n, lam=0.5):
    """Per-branch scales that float32 cannot hold, different per branch."""
    return [lam / math.sqrt(n) * (1 + i / 3) for i in range(n)]


def assert_terms_close(actual, expected, rtol=TOLERANCE):
    """Each order within ``rtol`` of that order's own largest entry."""
    assert actual.shape == expected.shape
    for k, (got, want) in enumerate(zip(actual, expected, strict=True)):
        scale = want.abs().max().item()
        error = (got - want).abs().max().item()
        assert error <= rtol * scale, f"order {k}: error {error:.3g}, term size {scale:.3g}"


def reference_taylor(model, x0, scales, order):
    reference = with_composite_layer_norms(model.tower)
    with torch.no_grad():
        return nested_jvp_taylor(tower_output(reference, x0, scales), order)


# --- Taylor terms ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "norm, blocks, activation, order",
    [
        ("pre_ln", 1, "gelu", 6),
        ("none", 1, "tanh", 6),
        ("pre_ln", 2, "gelu", 6),
        ("none", 2, "gelu", 6),
        ("pre_ln", 4, "tanh", 4),
        ("none", 4, "relu", 4),
    ],
)
def test_taylor_terms_equal_nested_jvp_of_a_composite_layer_norm_copy(
    norm, blocks, activation, order
):
    """n ∈ {2, 4, 8} modules; order 6 up to n = 4, 4 at n = 8 (nested jvp costs ~3^K
    forwards). Scales as Python floats: a float32 reading is off at 1e-8."""
    model, x0 = random_transformer(norm, blocks, activation)
    scales = spread_scales(2 * blocks)
    result = expansion.taylor_terms(model, x0, order, scales)
    expected = reference_taylor(model, x0, scales, order)
    assert_terms_close(result.terms, expected)
    with torch.no_grad():
        forward = tower_output(model.tower, x0, scales)(torch.tensor(1.0, dtype=torch.float64))
    assert (result.output - forward).abs().max() <= 1e3 * EPS * forward.abs().max()


@pytest.mark.parametrize("norm", ["pre_ln", "none"])
def test_taylor_terms_equal_richardson_finite_differences(norm):
    """T_1..T_3 against central differences extrapolated over six halvings of the step.
    Their round-off floor, ε·|x_n| / h^k grown by the extrapolation, bounds them to
    ~1e-13, 1e-11, 1e-9 relative (measured); the bounds leave a factor ~10."""
    model, x0 = random_transformer(norm, blocks=2, seed=3)
    scales = spread_scales(4)
    terms = expansion.taylor_terms(model, x0, 3, scales).terms
    with torch.no_grad():
        differences = richardson_taylor(tower_output(model.tower, x0, scales), 3, step=0.4)
    for k, rtol in zip((1, 2, 3), (1e-12, 1e-10, 1e-8), strict=True):
        assert_terms_close(terms[k : k + 1], differences[k - 1 : k], rtol=rtol)


@pytest.mark.parametrize("norm", ["pre_ln", "none"])
def test_first_and_second_order_closed_forms(norm):
    """T_1 = Σ s_l f_l(x0); T_2 = Σ_{i<j} s_i s_j Df_j(x0)[f_i(x0)] (first-order jvp of the
    composite-LN branches)."""
    model, x0 = random_transformer(norm, blocks=2, seed=4)
    scales = spread_scales(4)
    branches = with_composite_layer_norms(model.tower).branches
    with torch.no_grad():
        f = [branch(x0) for branch in branches]
        t1 = sum(s * fi for s, fi in zip(scales, f, strict=True))
        t2 = sum(
            scales[i] * scales[j] * torch.func.jvp(branches[j], (x0,), (f[i],))[1]
            for j in range(4)
            for i in range(j)
        )
    terms = expansion.taylor_terms(model, x0, 2, scales).terms
    assert_terms_close(terms[1:], torch.stack([t1, t2]))


def test_skipinit_alphas_are_read_in_float64():
    """ReZero's learned α_l, stored in float64, are the scales the terms use unrounded."""
    model, x0 = random_transformer("none", blocks=2, scaling="skipinit", seed=5)
    alphas = torch.tensor(spread_scales(4), dtype=torch.float64)
    with torch.no_grad():
        model.tower.alpha.copy_(alphas)
    assert model.tower.alpha.dtype == torch.float64
    result = expansion.taylor_terms(model, x0, 4)
    assert_terms_close(result.terms, reference_taylor(model, x0, alphas.tolist(), 4))


def test_causality_later_tokens_leave_earlier_positions_bit_identical():
    model, _ = random_transformer("pre_ln", blocks=2, seed=6)
    ids = tokens(7)
    changed = ids.clone()
    changed[:, 2] = (ids[:, 2] + 1) % VOCAB
    results = []
    for x in (ids, changed):
        x0 = model.stem(x).detach()
        taylor = expansion.taylor_terms(model, x0, 5)
        paths = expansion.path_terms(model, x0, 2, freeze="secant")
        results.append((taylor.terms, taylor.remainder, paths.terms, paths.remainder))
    for before, after in zip(*results, strict=True):
        assert torch.equal(before[..., :2, :], after[..., :2, :])
        assert not torch.equal(before[..., 2:, :], after[..., 2:, :])


def test_the_jet_uses_no_forward_mode_autodiff(monkeypatch):
    """Nested jvp through nn.LayerNorm is wrong from the second order on: the expansion
    must not rest on forward-mode AD anywhere (a guard against its return)."""

    def refuse(*_, **__):
        raise AssertionError("forward-mode autodiff used")

    monkeypatch.setattr(torch.func, "jvp", refuse)
    monkeypatch.setattr(torch.autograd.forward_ad, "make_dual", refuse)
    model, x0 = random_transformer("pre_ln", blocks=1, seed=8)
    assert expansion.taylor_terms(model, x0, 3).terms.isfinite().all()


# --- frozen path terms -----------------------------------------------------------------


@pytest.mark.parametrize("norm", ["pre_ln", "none"])
@pytest.mark.parametrize("blocks", [1, 4, 16])
def test_path_terms_sum_to_the_forward_pass(norm, blocks):
    model, x0 = random_transformer(norm, blocks, seed=9)
    scales = spread_scales(2 * blocks, lam=1.0)
    result = expansion.path_terms(model, x0, 3, scales, freeze="secant")
    output = expansion.tower_forward(model, x0, scales)
    assert (result.output - output).abs().max() <= 1e-12 * output.abs().max()
    assert torch.equal(result.terms[0], x0)


@pytest.mark.parametrize(
    "norm, activation, blocks", [("pre_ln", "gelu", 3), ("none", "tanh", 2), ("pre_ln", "relu", 2)]
)
def test_path_terms_equal_the_enumerated_paths(norm, activation, blocks):
    """Against the 2^n paths summed one by one through the frozen layers (n ≤ 6)."""
    model, x0 = random_transformer(norm, blocks, activation, seed=10)
    scales = spread_scales(2 * blocks, lam=1.0)
    freeze = "masks" if activation == "relu" else "secant"
    brute = expansion.path_terms_by_enumeration(model, x0, scales, freeze=freeze)
    output = expansion.tower_forward(model, x0, scales)
    assert (brute.sum(0) - output).abs().max() <= 1e-12 * output.abs().max()
    full = expansion.path_terms(model, x0, 2 * blocks, scales, freeze=freeze)
    # the enumeration takes each linear part as f̂(v) − f̂(0): round-off of the offsets
    atol = 1e3 * EPS * max(b(x0).abs().max().item() for b in model.tower.branches)
    for got, want in zip(full.terms, brute, strict=True):
        assert (got - want).abs().max() <= max(TOLERANCE * want.abs().max().item(), atol)
    truncated = expansion.path_terms(model, x0, 2, scales, freeze=freeze)
    assert (truncated.remainder - brute[3:].sum(0)).abs().max() <= max(
        TOLERANCE * brute[3:].sum(0).abs().max().item(), atol
    )


def attention_only_tower(blocks, seed=11):
    """Attention-only, bias-free, LayerNorm-free: the setting of Elhage et al. (2021)."""
    torch.manual_seed(seed)
    branches = [nn.Sequential(models.CausalSelfAttention(WIDTH, HEADS)) for _ in range(blocks)]
    tower = models.ResidualTower(branches, 1.0).double().eval()
    with torch.no_grad():
        for m in tower.modules():
            if isinstance(m, nn.Linear):
                m.bias.zero_()
    return tower


def head_circuits(attention, x):
    """Per head h: the pattern A^h on input x, written out (masked softmax of q kᵀ/√d_h),
    and the OV matrix W_V^hᵀ W_O^hᵀ (rows act on row vectors x)."""
    head = WIDTH // HEADS
    w_q, w_k, w_v = attention.qkv.weight.chunk(3, dim=0)
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    circuits = []
    for h in range(HEADS):
        rows = slice(h * head, (h + 1) * head)
        logits = (x @ w_q[rows].T) @ (x @ w_k[rows].T).mT / math.sqrt(head)
        pattern = torch.softmax(logits.masked_fill(~mask, -math.inf), dim=-1)
        circuits.append((pattern, w_v[rows].T @ attention.proj.weight[:, rows].T))
    return circuits


def test_path_terms_are_elhages_direct_head_and_virtual_head_terms():
    """P_0 = x0 (direct path), P_1 = Σ_l s_l Σ_h A^h_l x0 OV^h_l (individual heads),
    P_2 = Σ_{i<j} s_i s_j Σ_{h,h'} A^{h'}_j A^h_i x0 OV^h_i OV^{h'}_j (virtual heads), the
    patterns A taken on the real forward pass."""
    tower = attention_only_tower(blocks=3)
    x0 = torch.randn(2, T, WIDTH, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    scales = [0.9, 1.1, 0.7]
    with torch.no_grad():
        circuits, x = [], x0
        for branch, s in zip(tower.branches, scales, strict=True):
            circuits.append(head_circuits(branch[0], x))
            x = x + s * branch(x)
        heads = [sum(a @ x0 @ ov for a, ov in layer) for layer in circuits]
        p1 = sum(s * h for s, h in zip(scales, heads, strict=True))
        p2 = sum(
            scales[i] * scales[j] * a2 @ a1 @ x0 @ ov1 @ ov2
            for j in range(3)
            for i in range(j)
            for a1, ov1 in circuits[i]
            for a2, ov2 in circuits[j]
        )
    result = expansion.path_terms(tower, x0, 2, scales)
    assert_terms_close(result.terms, torch.stack([x0, p1, p2]), rtol=1e-13)


def test_composition_vanishes_where_patterns_cannot_move():
    """Q = K = 0 (uniform causal patterns) and a linear MLP: every module is affine, the
    Taylor and frozen path terms coincide, D_k = 0. With Q, K on, D_2 is not 0."""
    torch.manual_seed(12)
    branches = []
    for _ in range(3):
        attention = models.CausalSelfAttention(WIDTH, HEADS)
        branches += [
            nn.Sequential(attention),
            nn.Sequential(nn.Linear(WIDTH, 32), nn.Linear(32, WIDTH)),
        ]
    tower = models.ResidualTower(branches, 0.8).double().eval()
    x0 = torch.randn(2, T, WIDTH, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    moving = expansion.composition_terms(tower, x0, 4)
    taylor = expansion.taylor_terms(tower, x0, 4).terms
    assert (moving[2].abs().max() > 1e-3 * taylor[2].abs().max()).item()
    with torch.no_grad():
        for branch in tower.branches[::2]:
            branch[0].qkv.weight[: 2 * WIDTH] = 0
            branch[0].qkv.bias[: 2 * WIDTH] = 0
    taylor = expansion.taylor_terms(tower, x0, 4).terms
    fixed = expansion.composition_terms(tower, x0, 4)
    for k in range(5):
        assert fixed[k].abs().max() <= 1e-13 * taylor[k].abs().max()


def test_path_terms_refuse_smooth_gates_unless_asked():
    model, x0 = random_transformer("pre_ln", blocks=1)
    with pytest.raises(ValueError, match="freeze='secant'"):
        expansion.path_terms(model, x0, 2)
    with pytest.raises(ValueError, match="freeze must be one of"):
        expansion.path_terms(model, x0, 2, freeze="pattern")
    with pytest.raises(ValueError, match="ReLU branches of affine layers"):
        expansion.mask_changes_per_input(model, x0)
    assert not expansion.is_piecewise_linear(model)


# --- radius of convergence -------------------------------------------------------------


def test_radius_estimates_of_a_geometric_series_are_exact():
    """c_k = v / r^k (per input its own r): both tests give r at every order, no drift."""
    radii = torch.tensor([0.5, 2.0], dtype=torch.float64)
    v = torch.randn(2, 3, 5, dtype=torch.float64)
    terms = torch.stack([v / radii.view(2, 1, 1) ** k for k in range(7)])
    per_input = expansion.radius_estimates(terms, per_input=True)
    for estimate in (per_input.ratio, per_input.root):
        torch.testing.assert_close(estimate, radii, rtol=1e-14, atol=0)
    assert per_input.order == 6
    assert per_input.ratio_drift.abs().max() < 1e-14 and per_input.root_drift.abs().max() < 1e-14
    batch = expansion.radius_estimates(terms)  # the batch as one vector: the smallest radius
    assert batch.ratio.item() == pytest.approx(0.5, rel=0.01)
    with pytest.raises(ValueError, match="order >= 4"):
        expansion.radius_estimates(terms[:4])


def test_radius_estimates_scale_with_the_scales():
    """ρ is in units of t (λ_l = t·s_l): halving every scale doubles it exactly."""
    model, x0 = random_transformer("none", blocks=2, seed=13)
    scales = spread_scales(4)
    full = expansion.radius_estimates(expansion.taylor_terms(model, x0, 6, scales).terms)
    half = [s / 2 for s in scales]
    halved = expansion.radius_estimates(expansion.taylor_terms(model, x0, 6, half).terms)
    assert 0 < full.ratio.item() < math.inf and 0 < full.root.item() < math.inf
    torch.testing.assert_close(halved.ratio, 2 * full.ratio, rtol=1e-12, atol=0)
    torch.testing.assert_close(halved.root, 2 * full.root, rtol=1e-12, atol=0)


@pytest.mark.parametrize(
    "layer, match",
    [
        (nn.GELU(approximate="tanh"), "exact"),
        (nn.LayerNorm((T, WIDTH)), "last dim only"),
    ],
)
def test_layers_without_an_exact_series_here_are_refused(layer, match):
    tower = models.ResidualTower([nn.Sequential(layer)], 0.5).double()
    with pytest.raises(ValueError, match=match):
        expansion.taylor_terms(tower, torch.randn(2, T, WIDTH, dtype=torch.float64), 2)


def test_radius_estimates_approach_a_known_radius_and_their_drift_understates_the_error():
    """x_2 = x0 + t b + t LN(x0 + t b): LN's variance v(t) = (|c0 + t c_b|²)/d + ε has two
    complex conjugate roots of modulus ρ = √((|c0|² + dε)/|c_b|²) (c: centred), the
    series' radius. Both estimates converge to it; at K = 8 they are 14–22 % off while
    moving only 1–2 % from K − 2 (measured): the drift is no error bar."""
    torch.manual_seed(0)
    d, eps = 6, 0.1
    shift, norm = nn.Linear(d, d), nn.LayerNorm(d, elementwise_affine=False, eps=eps)
    tower = models.ResidualTower([nn.Sequential(shift), nn.Sequential(norm)], 1.0).double()
    with torch.no_grad():
        shift.weight.zero_()
    x0 = torch.randn(1, d, dtype=torch.float64)
    c0, cb = x0[0] - x0[0].mean(), (shift.bias - shift.bias.mean()).detach()
    radius = math.sqrt((c0 @ c0 + d * eps) / (cb @ cb))
    for order, error in ((8, 0.25), (32, 0.07)):
        estimate = expansion.radius_estimates(expansion.taylor_terms(tower, x0, order).terms)
        assert abs(estimate.ratio / radius - 1) <= error
        assert abs(estimate.root / radius - 1) <= error
        if order == 8:
            assert abs(estimate.ratio / radius - 1) > 0.1 > abs(estimate.ratio_drift) * 5
