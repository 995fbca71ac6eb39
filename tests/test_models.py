import math

import pytest
import torch
from conftest import stored_scales

from resdepth import models, scalings


@pytest.mark.parametrize(
    "scaling, depth, expected",
    [
        ("one", 16, 1.0),
        ("bn", 16, 1.0),
        ("inv_sqrt", 16, 0.25),
        ("inv", 16, 1 / 16),
        ("skipinit", 16, 0.0),
        (0.3, 16, 0.3),
        ("0.3", 7, 0.3),
    ],
)
def test_branch_scale_per_scaling(scaling, depth, expected):
    assert scalings.branch_scale(scaling, depth) == pytest.approx(expected)


@pytest.mark.parametrize("bad", ["half", -1.0, 0.0, float("nan"), None])
def test_bad_scaling_is_rejected(bad):
    with pytest.raises(ValueError):
        scalings.parse_scaling(bad)


@pytest.mark.parametrize("scaling", scalings.NAMED_SCALINGS + (0.2,))
def test_tower_forward_equals_explicit_loop(scaling):
    torch.manual_seed(0)
    model = models.build_model("mlp", (8, 8), 10, width=12, depth=5, scaling=scaling)
    if scaling == "skipinit":  # make the check non-trivial
        with torch.no_grad():
            model.tower.alpha.copy_(torch.linspace(0.1, 0.5, 5))
    lams = stored_scales(model, scaling, 5)
    model.double().eval()
    x = torch.randn(7, 8, 8, dtype=torch.float64)
    h = model.stem(x)
    for lam, branch in zip(lams, model.tower.branches, strict=True):
        h = h + lam * branch(h)
    torch.testing.assert_close(model(x), model.head(h), rtol=1e-13, atol=1e-13)


def test_skipinit_starts_as_identity():
    torch.manual_seed(0)
    model = models.build_model("mlp", (64,), 10, width=16, depth=9, scaling="skipinit")
    x = torch.randn(5, 16)
    torch.testing.assert_close(model.tower(x), x)
    assert model.tower.alpha.requires_grad


def test_lambda_is_saved_with_weights():
    model = models.build_model("mlp", (4,), 3, width=8, depth=4, scaling="inv")
    state = model.state_dict()
    assert torch.allclose(state["tower.lam"], torch.full((4,), 0.25, dtype=torch.float64))


def test_fixed_lambda_is_stored_in_float64_and_leaves_the_stream_float32():
    """λ = 1/√3 to float64's 16 digits, as the tables report it; the stream stays float32."""
    model = models.build_model("mlp", (4,), 3, width=8, depth=3, scaling="inv_sqrt")
    assert model.tower.lam.dtype == torch.float64
    assert model.tower.lam[0].item() == 1 / math.sqrt(3)
    assert model(torch.randn(2, 4)).dtype == torch.float32


def test_unknown_arch_is_rejected():
    with pytest.raises(ValueError, match="unknown arch"):
        models.build_model("lstm", (4,), 3, 8, 2, "one")


def test_explosion_at_init_for_lambda_one():
    """C2 in miniature: λ=1 norms grow geometrically, λ=1/n stays O(1)."""
    torch.manual_seed(0)
    x = torch.randn(32, 64, dtype=torch.float64)
    ratios = {}
    for scaling in ("one", "inv"):
        tower = models.build_model("mlp", (64,), 10, 64, 40, scaling).double().tower
        ratios[scaling] = (tower(x).norm() / x.norm()).item()
    assert ratios["one"] > 1e6
    assert ratios["inv"] < math.e**2
