"""Exact residual expansion terms of a tower, at every order (PAPER.md §2, claims C1, C5).

A tower computes x_l = x_{l-1} + s_l f_l(x_{l-1}). Put the per-branch scales on a common
dial, λ_l = t·s_l, and the output becomes a function of t. Two exact decompositions:

- Taylor terms (``taylor_terms``): the coefficients of t^k at t = 0, evaluated at t = 1:
  Σ_{i1<…<ik} s_{ik}…s_{i1} J_{ik}…J_{i2} f_{i1}(x0) for affine-and-ReLU towers; with one
  shared λ (all s_l = λ) the paper's λ^k T_k. For skipinit each module's learned α_l is
  its s_l. At t = 0 every module sees x0; ReLU masks are taken there (the tower is then a
  polynomial of degree n in t). Smooth layers (Tanh, GELU, LayerNorm, softmax attention)
  make the tower analytic in t, and their terms are exact at every order too.
- Path terms (``path_terms``): freeze every nonlinearity of each module at its value on
  the real forward pass. Every module is then an affine map f̂_l(x) = A_l x + b_l, the
  output a polynomial in t again, and its coefficient of t^k (at t = 1) is P_k: the sum of
  the C(n, k) paths through exactly k modules (Veit et al.'s unraveled view; for an
  attention-only transformer, Elhage et al.'s direct path, heads and virtual heads).
  Σ_k P_k is the real output. A path enters through its first module with that module's
  offset (s_{i1} f̂_{i1}(x0)) and crosses the later ones through their linear parts only.
  What is frozen (``FREEZE_POLICIES``): ReLU masks, LayerNorm's 1/σ (LayerNorm is
  homogeneous of degree 0, so this is its exact affine freeze) and attention patterns
  (the QK circuit frozen, the OV circuit linear) always; tanh and GELU only under
  ``freeze="secant"``, at their secant gate σ(h)/h (GELU: Φ(h)), a convention, as a
  smooth activation has no canonical mask. ``composition_terms`` is Taylor minus path at
  the same scales: the part of each order that lives in the moving nonlinearities (for a
  transformer, the patterns' Q/K composition).

Both propagate the coefficient tensors of a polynomial (series) in t through the tower,
stacked on a leading slot dim: ``coeffs[1:] += s · branch(coeffs[:-1])`` as a series. Each
layer maps its input's slots to its output's (``_layer_on_slots``): an affine layer applies
its linear part to every slot and its offset to slot 0 only (the constant term); a
nonlinear layer either computes the series of its output exactly by truncated power
series arithmetic (``resdepth.series``: products, exp, division, powers; Taylor), or
multiplies by its frozen factor (paths). This is one mechanism for every smooth layer: no
nested autodiff, O(K²) elementwise and bilinear work per layer for order K, so O(n·K²)
for n modules, never the C(n, k) of enumerating paths, and O(K) memory independent of n.

Branches must be ``nn.Sequential`` (nested allowed) of Linear, Conv1d/2d/3d, BatchNorm,
LayerNorm (last dim), ReLU, Tanh, GELU (exact) and ``models.CausalSelfAttention``.
BatchNorm is used in eval mode only: there it is a fixed per-channel affine map of each
sample; in training mode it normalises with batch statistics, is not a function of one
sample, and has no per-sample expansion.
"""

import itertools
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from resdepth import series
from resdepth.models import CausalSelfAttention, ResidualTower, causal_mask

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_AFFINE = (nn.Linear, *_CONVS, *_BATCHNORMS)
_SMOOTH = (nn.Tanh, nn.GELU)
_ACTIVATIONS = (nn.ReLU, *_SMOOTH)

#: What ``path_terms`` freezes besides LayerNorm scales and attention patterns: ``masks``
#: (ReLU masks; towers with smooth activations are refused) or ``secant`` (every
#: activation σ at its secant gate σ(h)/h on the real pre-activation h: a ReLU's mask,
#: GELU's Φ(h), tanh(h)/h; a convention for the smooth ones).
FREEZE_POLICIES = ("masks", "secant")


class Expansion(NamedTuple):
    """``terms[k]`` is the order-k term; ``terms.sum(0) + remainder == output``."""

    terms: torch.Tensor  # (K+1, *x0.shape)
    remainder: torch.Tensor  # everything of order > K (Taylor: at the actual scales)
    output: torch.Tensor  # the real tower output x_n


def tower_of(model):
    """The ``ResidualTower`` of a model (``model.tower``) or the tower itself."""
    tower = getattr(model, "tower", model)
    if not isinstance(tower, ResidualTower):
        raise TypeError(f"expected a ResidualTower or a model with .tower, got {type(model)}")
    return tower


def branch_layers(branch):
    """The layers of a branch in forward order, with nested Sequentials flattened.

    Rejects anything the expansion cannot treat exactly, before any computation.
    """
    if isinstance(branch, nn.Sequential):
        return [layer for child in branch for layer in branch_layers(child)]
    if isinstance(branch, _BATCHNORMS) and (branch.training or branch.running_var is None):
        raise ValueError(
            "BatchNorm must be in eval mode with running statistics (call model.eval()): "
            "in training mode it is not a per-sample function and has no expansion"
        )
    if isinstance(branch, nn.GELU) and branch.approximate != "none":
        raise ValueError("GELU must be the exact (erf) one, approximate='none'")
    if isinstance(branch, nn.LayerNorm) and len(branch.normalized_shape) != 1:
        raise ValueError("LayerNorm must normalise the last dim only")
    if not isinstance(branch, (*_AFFINE, *_ACTIVATIONS, nn.LayerNorm, CausalSelfAttention)):
        raise TypeError(
            f"unsupported layer {type(branch).__name__} in a residual branch: expected "
            "Sequential of Linear, Conv1d/2d/3d, BatchNorm (eval), LayerNorm, ReLU, Tanh, "
            "GELU and CausalSelfAttention"
        )
    return [branch]


def _tower_layers(model):
    return [layer for b in tower_of(model).branches for layer in branch_layers(b)]


def is_piecewise_linear(model):
    """True if the tower's branches are affine layers and ReLUs only: then ReLU masks are
    its only nonlinearity, and where none changes the Taylor and path terms coincide."""
    return all(isinstance(layer, (*_AFFINE, nn.ReLU)) for layer in _tower_layers(model))


def _require_masks(model, what):
    """Refuse towers whose nonlinearities are not all ReLU masks."""
    if not is_piecewise_linear(model):
        raise ValueError(
            f"{what} needs ReLU branches of affine layers (masks that freeze each module "
            "into an affine map); this tower has smooth layers (Tanh/GELU/LayerNorm/"
            "attention). Its Taylor terms (taylor_terms) are exact."
        )


def _check_freeze(model, freeze):
    if freeze not in FREEZE_POLICIES:
        raise ValueError(f"freeze must be one of {', '.join(FREEZE_POLICIES)}, got {freeze!r}")
    if freeze == "masks" and any(isinstance(layer, _SMOOTH) for layer in _tower_layers(model)):
        raise ValueError(
            "path terms with freeze='masks' need ReLU branches: this tower has Tanh/GELU "
            "activations, which have no masks. Pass freeze='secant' to freeze them at "
            "their secant gates σ(h)/h (a convention), or use taylor_terms (exact)."
        )


def _batchnorm_scale(layer):
    scale = torch.rsqrt(layer.running_var + layer.eps)
    return scale if layer.weight is None else scale * layer.weight


def _linear_part(layer, h):
    """An affine layer without its offset: what it does to a higher-order coefficient."""
    if isinstance(layer, _CONVS):
        return layer._conv_forward(h, layer.weight, None)  # the layer's own conv, no bias
    return h * _batchnorm_scale(layer).view(-1, *[1] * (h.dim() - 2))  # BatchNorm, eval


def _offset(layer, ndim):
    """layer(0) of an affine layer (conv, BatchNorm), shaped to broadcast over a batch of
    ``ndim`` dims, channels first."""
    if isinstance(layer, _BATCHNORMS):
        offset = -layer.running_mean * _batchnorm_scale(layer)
        if layer.bias is not None:
            offset = offset + layer.bias
    elif layer.bias is None:
        return None
    else:
        offset = layer.bias
    return offset.view(-1, *[1] * (ndim - 2))


def _affine_on_slots(layer, h):
    """An affine layer on slots (S, B, …): its linear part on every slot, its offset on
    slot 0 (the constant term of the series; the entry point of a path)."""
    if isinstance(layer, nn.Linear):
        return _linear_on_slots(h, layer.weight, layer.bias)
    out = _linear_part(layer, h.flatten(0, 1)).unflatten(0, h.shape[:2])
    offset = _offset(layer, out.dim() - 1)
    if offset is not None:
        out[0] += offset
    return out


def _linear_on_slots(h, weight, bias):
    """x ↦ x Wᵀ + b on slots: W on every slot, b on slot 0."""
    out = F.linear(h, weight)
    if bias is not None:
        out[0] += bias
    return out


def _secant_gate(activation, h):
    """σ(h)/h of an activation with σ(0) = 0 (at h = 0 its limit): the factor that makes it
    linear through the origin and exact at h. ReLU: its mask; GELU: Φ(h)."""
    if isinstance(activation, nn.ReLU):
        return (h > 0).to(h.dtype)
    if isinstance(activation, nn.GELU):
        return torch.special.ndtr(h)
    return torch.where(h == 0, 1.0, torch.tanh(h) / h)


def _layer_norm_on_slots(norm, h, frozen):
    if not frozen:
        return series.layer_norm(h, norm.weight, norm.bias, norm.eps)
    y = _layer_norm_linear_part(norm, h, _layer_norm_std(norm, h.sum(0)))
    if norm.bias is not None:
        y[0] += norm.bias
    return y


def _layer_norm_std(norm, x):
    """LayerNorm's σ = √(var + ε) of x, the factor frozen for paths."""
    return torch.sqrt(x.var(-1, correction=0, keepdim=True) + norm.eps)


def _layer_norm_linear_part(norm, v, std):
    """γ ⊙ (v − mean v) / σ: LayerNorm with σ frozen, without its offset β."""
    v = (v - v.mean(-1, keepdim=True)) / std
    return v if norm.weight is None else v * norm.weight


def _attention_on_slots(attention, h, frozen):
    """softmax(q kᵀ/√d + causal mask) v, then the output projection. Taylor: the logits
    are a Cauchy product of q's and k's series, the pattern their softmax series. Paths:
    the pattern of the real input (the slots' sum), a constant series."""
    if frozen:  # values of every slot; queries and keys of the real input only
        q, k, _ = map(attention.split_heads, attention.qkv(h.sum(0)).chunk(3, dim=-1))
        pattern = attention.pattern(q, k)[None]
        w_v, b_v = attention.qkv.weight.chunk(3)[2], attention.qkv.bias.chunk(3)[2]
        v = attention.split_heads(_linear_on_slots(h, w_v, b_v))
    else:
        q, k, v = map(attention.split_heads, _affine_on_slots(attention.qkv, h).chunk(3, dim=-1))
        logits = series.product(q, k, attention.logits)
        pattern = series.softmax(logits, -1, mask=causal_mask(h.shape[-2], h.device))
    mixed = series.product(pattern, v, torch.matmul)
    return _affine_on_slots(attention.proj, attention.merge_heads(mixed))


def _layer_on_slots(layer, h, frozen):
    """One layer on slots (S, B, …). Taylor (``frozen`` False): the slots are the
    coefficients of a series in t and come out as the output's. Paths: the slots are
    terms summing to the real input, every nonlinear factor is frozen at its value on that
    sum (the real forward pass), and each slot goes through the resulting affine map's
    linear part (slot 0 also takes its offset)."""
    if isinstance(layer, _AFFINE):
        return _affine_on_slots(layer, h)
    if isinstance(layer, nn.LayerNorm):
        return _layer_norm_on_slots(layer, h, frozen)
    if isinstance(layer, CausalSelfAttention):
        return _attention_on_slots(layer, h, frozen)
    if frozen:
        return h * _secant_gate(layer, h.sum(0))
    if isinstance(layer, nn.ReLU):
        return h * (h[0] > 0)  # the mask at t = 0 (x0): the tower's polynomial there
    return series.tanh(h) if isinstance(layer, nn.Tanh) else series.gelu(h)


def _branch_on_slots(layers, slots, frozen):
    """One branch applied to slots stacked as (S, B, *features) (see ``_layer_on_slots``)."""
    for layer in layers:
        slots = _layer_on_slots(layer, slots, frozen)
    return slots


def _tower_and_scales(model, scales):
    """The tower, its branches' layers and the per-branch scales as Python floats.

    Given scales are read in float64: a Python list would otherwise become a float32
    tensor, and a float64 expansion would run at scales rounded to 7 digits.
    """
    tower = tower_of(model)
    scales = tower.scales() if scales is None else torch.as_tensor(scales, dtype=torch.float64)
    if scales.shape != (len(tower.branches),):
        raise ValueError(f"need one scale per branch ({len(tower.branches)}), got {scales.shape}")
    return tower, [branch_layers(b) for b in tower.branches], scales.detach().tolist()


def _check_order(order):
    if not (isinstance(order, int) and order >= 0):
        raise ValueError(f"expansion order must be a non-negative integer, got {order!r}")


@torch.no_grad()
def tower_forward(model, x0, scales=None):
    """x_n for the tower's branches with per-branch ``scales`` (default: its own λ_l)."""
    tower, _, scales = _tower_and_scales(model, scales)
    x = x0
    for branch, s in zip(tower.branches, scales, strict=True):
        x = x + s * branch(x)
    return x


@torch.no_grad()
def taylor_terms(model, x0, order, scales=None):
    """Taylor terms of the tower output at λ = 0, orders 0..``order``.

    ``terms[k]`` is the coefficient of t^k for λ_l = t·s_l, evaluated at t = 1, with
    s_l = ``scales`` (default: the tower's own per-branch λ_l, α_l for skipinit). With one
    shared λ this is λ^k T_k: terms[0] = x0, terms[1] = λ Σ f_i(x0), terms[2] = λ² Σ_{i<j}
    J_{f_j}(x0) f_i(x0). ``remainder`` = x_n − Σ_{k≤K} terms[k] at those scales.
    Cost: each module's affine layers run once on K slots, its nonlinear layers do
    O(K²) series work (products, exp, division, powers), plus the forward pass for x_n:
    O(n·K²) for n modules; memory O(K) activations. No gradients.
    """
    _check_order(order)
    tower, layers, scales = _tower_and_scales(model, scales)
    coeffs = x0.new_zeros((order + 1, *x0.shape))
    coeffs[0] = x0
    if order > 0:
        for module_layers, s in zip(layers, scales, strict=True):
            # t·s·f(Σ_k t^k c_k): the output's t^k needs f's t^(k-1) coefficient.
            out = _branch_on_slots(module_layers, coeffs[:-1], frozen=False)
            coeffs[1:].add_(out, alpha=s)
    output = tower_forward(tower, x0, scales)
    return Expansion(coeffs, output - coeffs.sum(0), output)


@torch.no_grad()
def path_terms(model, x0, max_order, scales=None, freeze="masks"):
    """Path terms P_0..P_K of the tower output at its actual scales, every nonlinearity
    frozen on the real forward pass (``freeze``: see ``FREEZE_POLICIES``); ``remainder``
    is the tail P_{>K}, propagated, not a difference.

    The real inputs of the layers are the sums of the terms', so the frozen factors come
    from those sums (identical to the forward pass's up to round-off) and ``output`` =
    Σ_k P_k + tail. Cost: K + 2 slots (P_0..P_K and the tail, stacked in one batch; the
    forward pass is their sum) through each module's affine maps, O(n·K) for n modules,
    memory O(K) activations. No gradients.
    """
    _check_order(max_order)
    _check_freeze(model, freeze)
    _, layers, scales = _tower_and_scales(model, scales)
    terms = x0.new_zeros((max_order + 2, *x0.shape))  # P_0 .. P_K, tail
    terms[0] = x0
    for module_layers, s in zip(layers, scales, strict=True):
        out = _branch_on_slots(module_layers, terms, frozen=True)
        # A path of order k-1 through this module becomes one of order k; the tail gets
        # P_K's and its own.
        terms[1:-1].add_(out[:-2], alpha=s)
        terms[-1].add_(out[-2] + out[-1], alpha=s)
    return Expansion(terms[:-1], terms[-1], terms.sum(0))


def composition_terms(model, x0, order, scales=None, freeze="masks"):
    """D_k = Taylor term − path term of order k at the same scales, k = 0..``order``:
    the part of each order that the frozen paths miss because it lives in the motion of
    the nonlinearities (ReLU masks flipping; in a transformer, attention patterns moved
    by earlier modules, i.e. Q/K composition, LayerNorm scales and gates). D_0 = 0;
    D_k = 0 for every k where nothing can move (affine towers, uniform fixed patterns)."""
    taylor = taylor_terms(model, x0, order, scales).terms
    return taylor - path_terms(model, x0, order, scales, freeze).terms


class RadiusEstimate(NamedTuple):
    """Estimates of the radius of convergence ρ in t of Σ_k c_k t^k from its terms."""

    order: int  # K, the highest order used
    ratio: torch.Tensor  # ‖c_{K−1}‖ / ‖c_K‖ (ratio test)
    root: torch.Tensor  # (‖c_K‖ / ‖c_1‖)^(−1/(K−1)) (root test)
    ratio_drift: torch.Tensor  # ratio(K) / ratio(K − 2) − 1: how far it still moves
    root_drift: torch.Tensor  # root(K) / root(K − 2) − 1


def radius_estimates(terms, per_input=False):
    """Ratio and root test estimates of the radius of convergence of the λ-series, at the
    highest order K of ``terms`` (Taylor terms, K + 1 of them, K ≥ 4) and their drift from
    order K − 2 (how far from converged the estimate still is).

    ρ is in units of t, the common factor on the scales the terms were computed at
    (λ_l = t·s_l): the series converges at t = 1, the actual model, iff ρ > 1. With one
    shared λ, ρ·λ is the radius in λ itself. Norm: the Euclidean norm of each term over
    the whole batch (every input, position and feature), i.e. the radius of the batch's
    output as one vector, which is the smallest radius among its inputs; ``per_input``
    gives one estimate per input (norms over each input's features, shape (B,)) instead.
    Terms that vanish give inf or nan (e.g. skipinit at init, where every α_l = 0).

    Both are estimates only: on a LayerNorm tower with a known radius (a complex conjugate
    pair of singularities, tests) they were 22 % below and 14 % above it at K = 8 while
    drifting 1–2 % from K − 2, and within 6 % at K = 32. Report the two as a bracket; the
    drift says how settled they are, not how far from ρ.
    """
    order = len(terms) - 1
    if order < 4:
        raise ValueError(f"radius estimates need terms up to order >= 4, got {order}")
    norms = terms.flatten(2).norm(dim=2) if per_input else terms.flatten(1).norm(dim=1)

    def ratio(k):
        return norms[k - 1] / norms[k]

    def root(k):
        return (norms[k] / norms[1]) ** (-1 / (k - 1))

    return RadiusEstimate(
        order,
        ratio(order),
        root(order),
        ratio(order) / ratio(order - 2) - 1,
        root(order) / root(order - 2) - 1,
    )


@torch.no_grad()
def mask_changes_per_input(model, x0, scales=None):
    """Per input (batch row): how many ReLU units (over every module) have a mask on the
    real forward pass that differs from the mask at λ = 0, where each module sees x0;
    and how many ReLU units one input has. ``(changed (B,), units per input)``.

    An input with no change has its Taylor remainder exactly the higher-order terms;
    each change adds a piece that is not polynomial in λ.
    """
    _require_masks(model, "mask_changes_per_input")
    tower, layers, scales = _tower_and_scales(model, scales)
    changed = torch.zeros(len(x0), dtype=torch.long, device=x0.device)
    units = 0
    x = x0
    for module_layers, branch, s in zip(layers, tower.branches, scales, strict=True):
        for real, at_zero in zip(
            _frozen_factors(module_layers, x), _frozen_factors(module_layers, x0), strict=True
        ):
            if real is not None:  # a ReLU's mask
                changed += (real != at_zero).flatten(1).sum(1)
                units += real[0].numel()
        x = x + s * branch(x)
    return changed, units


def mask_change_fraction(model, x0, scales=None):
    """Fraction of ReLU units (over the batch and every module) off their λ = 0 mask
    (``mask_changes_per_input`` summed). Where it is 0 the Taylor and path terms
    coincide."""
    changed, units = mask_changes_per_input(model, x0, scales)
    return changed.sum().item() / (units * len(changed)) if units else 0.0


@torch.no_grad()
def path_terms_by_enumeration(model, x0, scales=None, freeze="masks"):
    """Reference for tests and benchmarks: every P_k (k = 0..n) by summing the 2^n paths
    one by one, O(n·2^n) branch applications. A path through i1 < … < ik contributes
    s_{ik} A_{ik} … s_{i2} A_{i2} s_{i1} f̂_{i1}(x0), where f̂_l is module l with its
    nonlinearities frozen on the real forward pass and A_l v = f̂_l(v) − f̂_l(0) its linear
    part. The frozen modules are built from the layers themselves (``_frozen_branch``),
    not from the slot propagation that ``path_terms`` uses.
    """
    _check_freeze(model, freeze)
    tower, layers, scales = _tower_and_scales(model, scales)
    n = len(layers)
    factors, x = [], x0
    for module_layers, branch, s in zip(layers, tower.branches, scales, strict=True):
        factors.append(_frozen_factors(module_layers, x))
        x = x + s * branch(x)
    offsets = [_frozen_branch(layers[i], factors[i], torch.zeros_like(x0)) for i in range(n)]
    terms = x0.new_zeros((n + 1, *x0.shape))
    for k in range(n + 1):
        for path in itertools.combinations(range(n), k):
            v = x0
            for position, i in enumerate(path):
                v = _frozen_branch(layers[i], factors[i], v)
                if position > 0:
                    v = v - offsets[i]
                v = scales[i] * v
            terms[k] += v
    return terms


def _frozen_factors(layers, x):
    """The nonlinear factors of one branch on input x, per layer in forward order: an
    activation's secant gate σ(h)/h (a ReLU's mask), LayerNorm's σ, an attention
    pattern; None for affine layers."""
    factors = []
    for layer in layers:
        if isinstance(layer, _ACTIVATIONS):
            factors.append(_secant_gate(layer, x))
        elif isinstance(layer, nn.LayerNorm):
            factors.append(_layer_norm_std(layer, x))
        elif isinstance(layer, CausalSelfAttention):
            q, k, _ = map(layer.split_heads, layer.qkv(x).chunk(3, dim=-1))
            factors.append(layer.pattern(q, k))
        else:
            factors.append(None)
        x = layer(x)
    return factors


def _frozen_branch(layers, factors, v):
    """One branch with its nonlinear factors fixed (``_frozen_factors``): affine in v."""
    for layer, factor in zip(layers, factors, strict=True):
        if isinstance(layer, _ACTIVATIONS):
            v = v * factor
        elif isinstance(layer, nn.LayerNorm):
            v = _layer_norm_linear_part(layer, v, factor)
            v = v if layer.bias is None else v + layer.bias
        elif isinstance(layer, CausalSelfAttention):
            v = layer(v, pattern=factor)
        else:
            v = layer(v)
    return v
