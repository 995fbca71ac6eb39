"""Exact residual expansion terms of a tower, at every order (docs/science.md §2, claims C1, C5).

A tower computes x_l = x_{l-1} + s_l f_l(x_{l-1}). Put the per-branch scales on a common
dial, λ_l = t·s_l, and the output becomes a function of t. Two exact decompositions:

- Taylor terms (``taylor_terms``): the coefficients of t^k at t = 0. At t = 0 every module
  sees x0, so with the ReLU masks taken at x0 the tower is a polynomial of degree n in t.
  Its coefficient of t^k, evaluated at t = 1, is Σ_{i1<…<ik} s_{ik}…s_{i1} J_{ik}…J_{i2}
  f_{i1}(x0): with one shared λ (all s_l = λ) it is the paper's λ^k T_k. For skipinit each
  module's learned α_l is its s_l.
- Path terms (``path_terms``): freeze each ReLU mask at the value it takes on the real
  forward pass. Every module is then an affine map f̂_l(x) = A_l x + b_l, the output is a
  polynomial in t again, and its coefficient of t^k (at t = 1) is P_k: the sum of the
  C(n, k) paths through exactly k modules (Veit et al.'s unraveled view). Σ_k P_k is the
  real output. A path enters through its first module with that module's bias
  (s_{i1} f̂_{i1}(x0)) and crosses the later ones through their linear parts only.

Both propagate the polynomial's coefficient tensors through the tower. Through an affine
layer only the order-0 coefficient carries the bias (the constant term of an affine
function of a polynomial); through a ReLU with a frozen mask each coefficient is
multiplied by the mask. The coefficients travel stacked on the batch dimension, so each
module runs once per layer on O(K) times the batch: O(n·K) work for a tower of n modules,
never the 2^n of enumerating paths, and O(K) memory independent of n.

Smooth branches (Tanh, GELU: ``models.ACTIVATIONS``) have Taylor terms too, the smooth
control of claim C1: the tower is then analytic in t, and the same propagation of
coefficients carries them through each activation σ exactly by Faà di Bruno's formula,
σ(h_0 + u) = Σ_m σ^(m)(h_0) u^m / m! with u = Σ_{j≥1} h_j t^j, the elementwise
derivatives σ^(m) by nested forward-mode autodiff (``torch.func.jvp``). A ReLU is the
case σ' = its mask at h_0, σ'' = 0. Smooth branches have no masks, hence no path terms:
``path_terms`` and the mask functions refuse them.

Branches must be ``nn.Sequential`` (nested allowed) of Linear, Conv1d/2d/3d, BatchNorm,
ReLU, Tanh and GELU layers. BatchNorm is used in eval mode only: there it is a fixed
per-channel affine map of each sample; in training mode it normalises with batch
statistics, is not a function of one sample, and has no per-sample expansion.
"""

import itertools
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from resdepth.models import ResidualTower

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_SMOOTH = (nn.Tanh, nn.GELU)


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
    if not isinstance(branch, (nn.ReLU, *_SMOOTH, nn.Linear, *_CONVS, *_BATCHNORMS)):
        raise TypeError(
            f"unsupported layer {type(branch).__name__} in a residual branch: expected "
            "Sequential of Linear, Conv1d/2d/3d, BatchNorm (eval), ReLU, Tanh and GELU"
        )
    return [branch]


def is_piecewise_linear(model):
    """True if every nonlinearity of the tower's branches is a ReLU (masks exist)."""
    tower = tower_of(model)
    layers = [layer for b in tower.branches for layer in branch_layers(b)]
    return not any(isinstance(layer, _SMOOTH) for layer in layers)


def _require_masks(model, what):
    """Refuse smooth branches where the method needs ReLU masks."""
    if not is_piecewise_linear(model):
        raise ValueError(
            f"{what} needs ReLU branches (masks that freeze each module into an affine "
            "map); this tower has smooth activations (Tanh/GELU), which have no masks. "
            "Its Taylor terms (taylor_terms) are exact."
        )


def _batchnorm_scale(layer):
    scale = torch.rsqrt(layer.running_var + layer.eps)
    return scale if layer.weight is None else scale * layer.weight


def _linear_part(layer, h):
    """An affine layer without its offset: what it does to a higher-order coefficient."""
    if isinstance(layer, nn.Linear):
        return F.linear(h, layer.weight)
    if isinstance(layer, _CONVS):
        return layer._conv_forward(h, layer.weight, None)  # the layer's own conv, no bias
    return h * _batchnorm_scale(layer).view(-1, *[1] * (h.dim() - 2))  # BatchNorm, eval


def _offset(layer, ndim):
    """layer(0) of an affine layer, shaped to broadcast over a batch of ``ndim`` dims."""
    if isinstance(layer, _BATCHNORMS):
        offset = -layer.running_mean * _batchnorm_scale(layer)
        if layer.bias is not None:
            offset = offset + layer.bias
    elif layer.bias is None:
        return None
    else:
        offset = layer.bias
    return offset.view(-1, *[1] * (ndim - 2))  # channels first; Linear: ndim == 2


def _branch_on_slots(layers, slots, masks_from_sum):
    """One branch applied to the coefficients of a polynomial, stacked as (S, B, *features).

    Slot 0 is the constant term: only it receives the affine layers' offsets. Each ReLU
    multiplies every slot by one mask: that of the constant term's pre-activation (Taylor,
    λ = 0) or that of the sum of all slots, the real pre-activation (paths).
    """
    n_slots, batch = slots.shape[:2]
    h = slots
    for layer in layers:
        if isinstance(layer, nn.ReLU):
            h = h * ((h.sum(0) if masks_from_sum else h[0]) > 0)
            continue
        if isinstance(layer, _SMOOTH):  # Taylor only: path_terms refuses smooth branches
            h = _activation_on_series(layer, h)
            continue
        h = _linear_part(layer, h.flatten(0, 1)).unflatten(0, (n_slots, batch))
        offset = _offset(layer, h.dim() - 1)
        if offset is not None:
            h[0] += offset
    return h


def _activation_on_series(activation, h):
    """The coefficients of σ(Σ_j h_j t^j) up to the order of ``h`` (slots, stacked):
    Σ_m σ^(m)(h_0) u^m / m! with u = Σ_{j≥1} h_j t^j, whose m-th power starts at t^m.
    σ^(m) by m nested jvps of the elementwise σ (tangent 1: its Jacobian is diagonal)."""
    u = h.clone()
    u[0] = 0
    power = torch.zeros_like(h)
    power[0] = 1  # u^0
    out = torch.zeros_like(h)
    derivative = activation
    for m in range(len(h)):
        out += derivative(h[0]) * power / math.factorial(m)
        power = _series_product(power, u)
        derivative = _derivative(derivative)
    return out


def _series_product(a, b):
    """Cauchy product of two truncated power series (coefficients stacked on dim 0)."""
    return torch.stack([sum(a[i] * b[k - i] for i in range(k + 1)) for k in range(len(a))])


def _derivative(f):
    """x ↦ f'(x) for an elementwise f, by forward mode."""
    return lambda x: torch.func.jvp(f, (x,), (torch.ones_like(x),))[1]


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
    Cost: K + 1 branch applications per module (K coefficients, stacked, plus the forward
    pass for x_n), so O(n·K) for n modules; memory O(K) activations. No gradients.
    Smooth activations add O(K³) elementwise work per activation (``_activation_on_series``).
    """
    _check_order(order)
    tower, layers, scales = _tower_and_scales(model, scales)
    coeffs = x0.new_zeros((order + 1, *x0.shape))
    coeffs[0] = x0
    if order > 0:
        for module_layers, s in zip(layers, scales, strict=True):
            # t·s·f(Σ_k t^k c_k) (ReLU masks at x0): the output's t^k needs f's t^(k-1) term.
            out = _branch_on_slots(module_layers, coeffs[:-1], masks_from_sum=False)
            coeffs[1:].add_(out, alpha=s)
    output = tower_forward(tower, x0, scales)
    return Expansion(coeffs, output - coeffs.sum(0), output)


@torch.no_grad()
def path_terms(model, x0, max_order, scales=None):
    """Path terms P_0..P_K of the tower output at its actual scales, masks frozen on the
    real forward pass; ``remainder`` is the tail P_{>K}, propagated, not a difference.

    The real pre-activations are the sums of the terms' pre-activations, so the masks come
    from those sums (identical to the forward pass's up to round-off) and ``output`` =
    Σ_k P_k + tail. Cost: K + 2 branch applications per module (P_0..P_K and the tail,
    stacked in one batch; the forward pass is their sum), so O(n·K) for n modules, memory
    O(K) activations. No gradients.
    """
    _check_order(max_order)
    _require_masks(model, "path_terms")
    _, layers, scales = _tower_and_scales(model, scales)
    terms = x0.new_zeros((max_order + 2, *x0.shape))  # P_0 .. P_K, tail
    terms[0] = x0
    for module_layers, s in zip(layers, scales, strict=True):
        out = _branch_on_slots(module_layers, terms, masks_from_sum=True)
        # A path of order k-1 through this module becomes one of order k; the tail gets
        # P_K's and its own.
        terms[1:-1].add_(out[:-2], alpha=s)
        terms[-1].add_(out[-2] + out[-1], alpha=s)
    return Expansion(terms[:-1], terms[-1], terms.sum(0))


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
            _relu_masks(module_layers, x), _relu_masks(module_layers, x0), strict=True
        ):
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
def path_terms_by_enumeration(model, x0, scales=None):
    """Reference for tests and benchmarks: every P_k (k = 0..n) by summing the 2^n paths
    one by one, O(n·2^n) branch applications. A path through i1 < … < ik contributes
    s_{ik} A_{ik} … s_{i2} A_{i2} s_{i1} f̂_{i1}(x0), where f̂_l is module l with its ReLU
    masks frozen on the real forward pass and A_l v = f̂_l(v) − f̂_l(0) its linear part.
    """
    _require_masks(model, "path_terms_by_enumeration")
    tower, layers, scales = _tower_and_scales(model, scales)
    n = len(layers)
    masks, x = [], x0
    for module_layers, branch, s in zip(layers, tower.branches, scales, strict=True):
        masks.append(_relu_masks(module_layers, x))
        x = x + s * branch(x)
    offsets = [_frozen_branch(layers[i], masks[i], torch.zeros_like(x0)) for i in range(n)]
    terms = x0.new_zeros((n + 1, *x0.shape))
    for k in range(n + 1):
        for path in itertools.combinations(range(n), k):
            v = x0
            for position, i in enumerate(path):
                v = _frozen_branch(layers[i], masks[i], v)
                if position > 0:
                    v = v - offsets[i]
                v = scales[i] * v
            terms[k] += v
    return terms


def _relu_masks(layers, x):
    """The ReLU masks (pre-activation > 0) of one branch on input x, in forward order."""
    masks = []
    for layer in layers:
        if isinstance(layer, nn.ReLU):
            masks.append((x > 0).to(x.dtype))
        x = layer(x)
    return masks


def _frozen_branch(layers, masks, v):
    """One branch with its ReLUs replaced by the given fixed masks: an affine map of v."""
    masks = iter(masks)
    for layer in layers:
        v = v * next(masks) if isinstance(layer, nn.ReLU) else layer(v)
    return v
