"""Truncated power series ("jets") in one variable t: exact Taylor coefficients by arithmetic.

A series a(t) = Σ_{k=0}^{K} a_k t^k is a tensor whose dim 0 holds a_0 … a_K (the slots,
each of the value's shape). Every function here returns its result's coefficients up to
the same order K exactly: nothing below t^{K+1} is approximated, and nothing is
differentiated. The recurrences follow from differentiating each defining identity once
(y = e^a ⇒ y' = y a', so k y_k = Σ_j j a_j y_{k−j}): O(K²) elementwise work per operation,
whatever function the argument came from. ``expansion.taylor_terms`` pushes the series of
the residual stream through every layer with these, so the tower's Taylor terms cost
O(n·K²) for n modules.

Forward-mode autodiff is never used here: nested jvp through ``nn.LayerNorm`` is wrong
from the second order on in current torch; ``layer_norm`` below is built from the series
operations only.
"""

import math

import torch


def product(a, b, op=torch.mul):
    """The Cauchy product (a ∘ b)_k = Σ_{i+j=k} op(a_i, b_j) for a bilinear ``op`` (mul,
    matmul, q kᵀ …). A series with fewer slots has zero higher coefficients: a constant
    (one slot) multiplies every slot of the other. The result has the longer one's order."""
    order = max(len(a), len(b))
    if len(a) <= len(b):
        pieces = [(i, op(a[i], b[: order - i])) for i in range(len(a))]
    else:
        pieces = [(j, op(a[: order - j], b[j])) for j in range(len(b))]
    out = pieces[0][1].new_zeros((order, *pieces[0][1].shape[1:]))
    for start, piece in pieces:
        out[start : start + len(piece)] += piece
    return out


def _weights(values, like):
    """Scalars j (a 1-D sequence) shaped to multiply slots of ``like`` (dim 0)."""
    return torch.as_tensor(values, dtype=like.dtype, device=like.device).view(
        -1, *[1] * (like.dim() - 1)
    )


def _integrate(a, value, slope):
    """y = F(a) from y_0 = F(a_0) = ``value`` and the chain rule y' = F'(a) a', which gives
    k y_k = Σ_{j=1}^k j a_j s_{k−j} with s = F'(a) as a series; ``slope(y, m)`` returns s_m
    from the coefficients y_0 … y_m found so far."""
    y = a.new_empty((len(a), *torch.broadcast_shapes(a.shape[1:], value.shape)))
    y[0] = value
    slopes = torch.empty_like(y)
    weighted = _weights(range(len(a)), a) * a  # j a_j
    for k in range(1, len(a)):
        slopes[k - 1] = slope(y, k - 1)
        y[k] = (weighted[1 : k + 1] * slopes[:k].flip(0)).sum(0) / k
    return y


def exp(a):
    """e^a: y' = y a'."""
    return _integrate(a, torch.exp(a[0]), lambda y, m: y[m])


def tanh(a):
    """tanh a: y' = (1 − y²) a'."""

    def slope(y, m):
        square = (y[: m + 1] * y[: m + 1].flip(0)).sum(0)  # (y²)_m
        return 1 - square if m == 0 else -square

    return _integrate(a, torch.tanh(a[0]), slope)


def normal_cdf(a):
    """Φ(a), the standard normal distribution function: Φ' = φ(a) a', with the density
    φ(a) = e^{−a²/2}/√(2π) a series of its own."""
    density = exp(-0.5 * product(a, a)) / math.sqrt(2 * math.pi)
    # k y_k = Σ_j j a_j φ_{k−j}: the slope is known beforehand, so one Cauchy product
    weighted = _weights(range(len(a)), a) * a  # j a_j
    y = torch.empty_like(a)
    y[0] = torch.special.ndtr(a[0])
    if len(a) > 1:
        y[1:] = product(weighted[1:], density[:-1]) / _weights(range(1, len(a)), a)
    return y


def gelu(a):
    """GELU(a) = a Φ(a) (the exact, erf form of ``nn.GELU``)."""
    return product(a, normal_cdf(a))


def divide(a, b):
    """a / b: from a = b c, c_k = (a_k − Σ_{j=1}^k b_j c_{k−j}) / b_0; needs b_0 ≠ 0.
    Shapes broadcast (slots excepted) like a / b."""
    c = a.new_empty((len(a), *torch.broadcast_shapes(a.shape[1:], b.shape[1:])))
    for k in range(len(a)):
        c[k] = a[k]
        if k:
            c[k] -= (b[1 : k + 1] * c[:k].flip(0)).sum(0)
        c[k] /= b[0]
    return c


def power(u, r):
    """u^r for u_0 > 0: from u v' = r u' v, k u_0 v_k = Σ_{j=1}^k ((r + 1) j − k) u_j v_{k−j}."""
    v = torch.empty_like(u)
    v[0] = u[0] ** r
    for k in range(1, len(u)):
        weights = _weights([(r + 1) * j - k for j in range(1, k + 1)], u)
        v[k] = (weights * u[1 : k + 1] * v[:k].flip(0)).sum(0) / (k * u[0])
    return v


def softmax(logits, dim, mask=None):
    """softmax over ``dim`` (a dim of the value, counted without the slots when ≥ 0).

    ``mask`` (broadcastable to a value, True where kept) sets the constant coefficient of
    masked logits to −∞: their exponential is 0 at every order, as their higher
    coefficients only ever multiply it. The constant coefficient is shifted by its maximum
    (softmax is shift invariant) so that no exponential overflows."""
    constant = logits[0] if mask is None else logits[0].masked_fill(~mask, -math.inf)
    shifted = torch.cat([(constant - constant.amax(dim, keepdim=True))[None], logits[1:]])
    weights = exp(shifted)
    return divide(weights, weights.sum(dim + 1 if dim >= 0 else dim, keepdim=True))


def layer_norm(a, weight=None, bias=None, eps=1e-5):
    """LayerNorm over the last dim: c = a − mean(a), y = c (mean(c²) + ε)^{−½} γ + β;
    ε and β are constants (slot 0 only)."""
    centred = a - a.mean(-1, keepdim=True)
    variance = product(centred, centred).mean(-1, keepdim=True)
    variance[0] += eps
    y = product(centred, power(variance, -0.5))
    if weight is not None:
        y = y * weight
    if bias is not None:
        y[0] += bias
    return y
