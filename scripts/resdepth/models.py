"""Residual towers  x_l = x_{l-1} + λ_l · f_l(x_{l-1})  and the full models around them.

A model is ``head ∘ tower ∘ stem``. The tower only knows a list of residual branches
and one scale λ_l per branch, so any branch of matching input/output shape (MLP or
conv) plugs in without touching it. Analysis code (expansion terms, lesions)
relies on exactly two attributes of a tower: ``branches`` and ``scales()``.
"""

import math

import torch
from torch import nn

from resdepth.scalings import branch_scale, parse_scaling


class ResidualTower(nn.Module):
    """n residual branches applied as x ← x + λ_l f_l(x).

    For ``skipinit`` the λ_l are learnable (SkipInit's α_l, initialised at 0); otherwise
    they are a fixed buffer, saved with the weights so a loaded model knows its λ.
    """

    def __init__(self, branches, scaling):
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.scaling = parse_scaling(scaling)
        # A fixed λ is kept in float64, the precision the tables report it in (a 0-dim
        # float64 λ times a float32 branch output stays float32); SkipInit's learned α_l
        # train in the model's dtype.
        dtype = torch.get_default_dtype() if self.scaling == "skipinit" else torch.float64
        scale = branch_scale(self.scaling, len(self.branches))
        init = torch.full((len(self.branches),), scale, dtype=dtype)
        if self.scaling == "skipinit":
            self.alpha = nn.Parameter(init)
        else:
            self.register_buffer("lam", init)

    def scales(self):
        """Per-branch λ_l as a 1-D tensor (learned α_l for skipinit)."""
        return self.alpha if self.scaling == "skipinit" else self.lam

    def forward(self, x):
        for branch, lam in zip(self.branches, self.scales(), strict=True):
            x = x + lam * branch(x)
        return x


class ResNet(nn.Module):
    """``head(tower(stem(x)))``; the three parts are public for analysis code."""

    def __init__(self, stem, tower, head):
        super().__init__()
        self.stem, self.tower, self.head = stem, tower, head

    def forward(self, x):
        return self.head(self.tower(self.stem(x)))


#: The branches' nonlinearity (arch option ``activation``): ReLU, the paper's, or a smooth
#: one, under which the tower is analytic in λ and the residual expansion's assumptions
#: hold everywhere (claim C1's control). Weights keep the He (ReLU) initialisation.
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


def activation_layer(name):
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}: expected one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def mlp_branch(width, batchnorm=False, activation="relu"):
    """Linear-act-Linear (with BatchNorm after each Linear for the ``bn`` scaling)."""
    if batchnorm:
        return nn.Sequential(
            nn.Linear(width, width, bias=False),
            nn.BatchNorm1d(width),
            activation_layer(activation),
            nn.Linear(width, width, bias=False),
            nn.BatchNorm1d(width),
        )
    return nn.Sequential(
        nn.Linear(width, width), activation_layer(activation), nn.Linear(width, width)
    )


def he_init_(model):
    """He (Kaiming-normal, fan-in) weights and zero biases for every Linear/Conv layer.

    Zero biases keep the towers positively homogeneous at initialisation, which makes
    the init-norm sweep (claim C2) a pure statement about depth and λ.
    """
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


def mlp_resnet(input_shape, num_classes, width, depth, scaling, activation="relu"):
    """Flatten → Linear stem → residual MLP tower → Linear head."""
    scaling = parse_scaling(scaling)
    stem = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), width))
    branches = [
        mlp_branch(width, batchnorm=scaling == "bn", activation=activation) for _ in range(depth)
    ]
    return he_init_(ResNet(stem, ResidualTower(branches, scaling), nn.Linear(width, num_classes)))


def conv_branch(channels, batchnorm=False, activation="relu"):
    """conv3×3-act-conv3×3 (pre-activation BN-act-conv-BN-act-conv for ``bn``).

    Padding 1 keeps the feature map's shape, as every residual branch must.
    """
    if batchnorm:
        return nn.Sequential(
            nn.BatchNorm2d(channels),
            activation_layer(activation),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            activation_layer(activation),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
        )
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, padding=1),
        activation_layer(activation),
        nn.Conv2d(channels, channels, 3, padding=1),
    )


class AtLeastFloat32(nn.Module):
    """Casts half-precision activations up to float32 (float64 stays float64).

    After the stem it keeps the residual stream in float32 under bf16 autocast: bf16
    resolves only 2⁻⁸ of a value, so with λ = 1/1000 the update λ·f(x) would mostly
    round away in x + λ·f(x). The branches still compute in bf16.
    """

    def forward(self, x):
        return x.to(torch.promote_types(x.dtype, torch.float32))


def conv_resnet(input_shape, num_classes, width, depth, scaling, stem_stride=1, activation="relu"):
    """Conv stem (C_in → width channels, stride ``stem_stride``) → isotropic conv tower →
    global average pool → Linear head.

    The stem's kernel is ``stem_stride + 2`` with padding 1: a plain 3×3 conv at stride 1,
    and at stride s windows that cover every pixel and give exactly ⌊H/s⌋×⌊W/s⌋ maps
    (a 32×32 image becomes 16×16 at stride 2). The tower then runs at that resolution,
    on a residual stream kept in float32 (see ``AtLeastFloat32``).
    """
    if len(input_shape) != 3:
        raise ValueError(f"conv needs C×H×W inputs, got input_shape {tuple(input_shape)}")
    if not (isinstance(stem_stride, int) and 1 <= stem_stride <= min(input_shape[1:])):
        raise ValueError(f"stem_stride must be an integer in 1..{min(input_shape[1:])}")
    scaling = parse_scaling(scaling)
    stem = nn.Sequential(
        nn.Conv2d(input_shape[0], width, stem_stride + 2, stride=stem_stride, padding=1),
        AtLeastFloat32(),
    )
    branches = [
        conv_branch(width, batchnorm=scaling == "bn", activation=activation) for _ in range(depth)
    ]
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))
    return he_init_(ResNet(stem, ResidualTower(branches, scaling), head))


#: Builders ``f(input_shape, num_classes, width, depth, scaling, **options) -> ResNet``.
ARCHITECTURES = {"mlp": mlp_resnet, "conv": conv_resnet}


def build_model(arch, input_shape, num_classes, width, depth, scaling, **options):
    """Build a freshly initialised model; the caller seeds torch beforehand.

    ``options`` are architecture-specific settings from the config: ``activation`` (both;
    see ACTIVATIONS) and a conv stem's ``stem_stride``.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown arch {arch!r}: expected one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch](tuple(input_shape), num_classes, width, depth, scaling, **options)
