"""Independent references for Taylor terms: nested forward-mode autodiff, a composite
LayerNorm to run it through, and Richardson-extrapolated finite differences."""

import copy
import math

import torch
from torch import nn


def nested_jvp_taylor(g, order):
    """Taylor coefficients g^(k)(0)/k!, k = 0..order, of g: R → tensor, by ``order``
    nested ``torch.func.jvp`` in one pass (each level returns the derivatives below it and
    one more). Cost ~3^order times g's: small models and order ≤ 6 only."""

    def lift(inner):
        def derivatives(t):
            primal, tangent = torch.func.jvp(inner, (t,), (torch.ones_like(t),))
            return (*primal, tangent[-1])

        return derivatives

    derivatives = lambda t: (g(t),)  # noqa: E731
    for _ in range(order):
        derivatives = lift(derivatives)
    values = derivatives(torch.zeros((), dtype=torch.float64))
    return torch.stack([value / math.factorial(k) for k, value in enumerate(values)])


def richardson_taylor(g, order, step, levels=6):
    """g^(k)(0)/k!, k = 1..order (order ≤ 3), from central differences at steps
    step/2^j (j < levels), Richardson-extrapolated: each level removes the next even power
    of the step from the truncation error."""
    stencils = {  # central differences: (offsets in steps, weights), error O(h²)
        1: ([1, -1], [0.5, -0.5]),
        2: ([1, 0, -1], [1.0, -2.0, 1.0]),
        3: ([2, 1, -1, -2], [0.5, -1.0, 1.0, -0.5]),
    }
    coefficients = []
    for k in range(1, order + 1):
        offsets, weights = stencils[k]
        table = []
        for j in range(levels):
            h = step / 2**j
            estimate = (
                sum(
                    w * g(torch.tensor(o * h, dtype=torch.float64))
                    for o, w in zip(offsets, weights, strict=True)
                )
                / h**k
            )
            row = [estimate]
            for m in range(1, j + 1):  # eliminate h^(2m)
                row.append(row[m - 1] + (row[m - 1] - table[j - 1][m - 1]) / (4**m - 1))
            table.append(row)
        coefficients.append(table[-1][-1] / math.factorial(k))
    return torch.stack(coefficients)


class CompositeLayerNorm(nn.Module):
    """``nn.LayerNorm``'s function from elementary ops (mean, centre, variance, rsqrt),
    sharing its parameters: nested jvp through ``nn.LayerNorm`` / ``F.layer_norm`` is wrong
    from the second order on in torch 2.x, through these ops it is right."""

    def __init__(self, norm):
        super().__init__()
        self.weight, self.bias, self.eps = norm.weight, norm.bias, norm.eps

    def forward(self, x):
        centred = x - x.mean(-1, keepdim=True)
        y = centred * torch.rsqrt((centred * centred).mean(-1, keepdim=True) + self.eps)
        return y * self.weight + self.bias


def with_composite_layer_norms(module):
    """A copy of ``module`` whose every nn.LayerNorm is a ``CompositeLayerNorm``."""
    module = copy.deepcopy(module)
    for parent in list(module.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.LayerNorm):
                setattr(parent, name, CompositeLayerNorm(child))
    return module


def tower_output(tower, x0, scales):
    """t ↦ x_n(t) for λ_l = t·s_l, the tower written out independently of the library."""

    def output(t):
        x = x0
        for branch, s in zip(tower.branches, scales, strict=True):
            x = x + t * s * branch(x)
        return x

    return output
