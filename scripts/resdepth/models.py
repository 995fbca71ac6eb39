"""Residual towers  x_l = x_{l-1} + λ_l · f_l(x_{l-1})  and the full models around them.

A model is ``head ∘ tower ∘ stem``. The tower only knows a list of residual branches
and one scale λ_l per branch, so any branch of matching input/output shape (MLP, conv,
or a transformer's attention and MLP sublayers) plugs in without touching it. Analysis
code (expansion terms, lesions) relies on exactly two attributes of a tower: ``branches``
and ``scales()``.
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


class TokenEmbedding(nn.Module):
    """Token ids (N, T) → token embedding + position embedding, (N, T, width)."""

    def __init__(self, vocab_size, context, width):
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, width)
        self.positions = nn.Embedding(context, width)

    def forward(self, ids):
        if ids.dim() != 2 or ids.shape[1] > self.positions.num_embeddings:
            raise ValueError(
                f"expected token ids of shape (N, T) with T <= context "
                f"{self.positions.num_embeddings}, got {tuple(ids.shape)}"
            )
        return self.tokens(ids) + self.positions(torch.arange(ids.shape[1], device=ids.device))


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention, its softmax pattern written out (no SDPA kernel):
    the expansion reads and freezes the pattern, and forward-mode AD needs the plain ops.

    ``forward(x, pattern)`` with a given pattern (B, heads, T, T) is the module with its
    pattern frozen: an affine map of x (the residual expansion's frozen path terms).
    """

    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)  # queries, keys, values of every head
        self.proj = nn.Linear(width, width)  # the heads' outputs back into the stream

    def split_heads(self, z):
        """(..., T, width) → (..., heads, T, width / heads)."""
        return z.unflatten(-1, (self.heads, -1)).transpose(-3, -2)

    def merge_heads(self, y):
        """(..., heads, T, head width) → (..., T, width)."""
        return y.transpose(-3, -2).flatten(-2)

    def logits(self, q, k):
        """Scaled attention logits q kᵀ / √d_head of split heads (causal mask not applied)."""
        return q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])

    def pattern(self, q, k):
        """softmax over the keys of the causally masked logits: (…, heads, T, T)."""
        logits = self.logits(q, k)
        return logits.masked_fill(~causal_mask(logits.shape[-1], q.device), -math.inf).softmax(-1)

    def forward(self, x, pattern=None):
        q, k, v = map(self.split_heads, self.qkv(x).chunk(3, dim=-1))
        if pattern is None:
            pattern = self.pattern(q, k)
        return self.proj(self.merge_heads(pattern @ v))


def causal_mask(length, device=None):
    """(T, T) booleans, True where query i may attend to key j (j <= i)."""
    return torch.ones(length, length, dtype=torch.bool, device=device).tril()


class LastPosition(nn.Module):
    """(N, T, width) → (N, width): the stream at the last position, where the label is read."""

    def forward(self, x):
        return x[:, -1]


#: ``arch_options.transformer.norm``: pre-LN (a LayerNorm at the input of every branch and
#: before the head) or none. Unset, it follows the scaling: pre-LN for ``bn``, the
#: normalised reference, none for every other scaling.
TRANSFORMER_NORMS = ("pre_ln", "none")
#: ``arch_options.transformer.init``: ``fan_in`` draws every Linear weight from
#: N(0, 1/fan_in) and the embeddings from N(0, 1); ``gpt2`` draws them from N(0, 0.02²)
#: and the residual projections (attention output, MLP second layer) from
#: N(0, (0.02/√(2·blocks))²) (GPT-2, nanoGPT). Biases start at zero, LayerNorms at γ=1, β=0.
TRANSFORMER_INITS = ("fan_in", "gpt2")


def transformer_branches(width, heads, pre_ln, activation):
    """One block's two residual branches: [LN] causal attention, and [LN] Linear(d, 4d) →
    activation → Linear(4d, d)."""
    norm = [nn.LayerNorm(width)] if pre_ln else []
    attention = nn.Sequential(*norm, CausalSelfAttention(width, heads))
    norm = [nn.LayerNorm(width)] if pre_ln else []
    mlp = nn.Sequential(
        *norm,
        nn.Linear(width, 4 * width),
        activation_layer(activation),
        nn.Linear(4 * width, width),
    )
    return [attention, mlp]


def transformer_init_(model, init, blocks):
    """Initialise a transformer's weights by ``init`` (TRANSFORMER_INITS)."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            std = 1 / math.sqrt(m.in_features) if init == "fan_in" else 0.02
            nn.init.normal_(m.weight, std=std)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=1.0 if init == "fan_in" else 0.02)
    if init == "gpt2":
        branches = model.tower.branches
        for attention, mlp in zip(branches[::2], branches[1::2], strict=True):
            for projection in (attention[-1].proj, mlp[-1]):
                nn.init.normal_(projection.weight, std=0.02 / math.sqrt(2 * blocks))
    return model


def transformer_resnet(
    input_shape,
    num_classes,
    width,
    depth,
    scaling,
    vocab_size=None,
    heads=1,
    norm=None,
    activation="gelu",
    init="fan_in",
    context=None,
):
    """Decoder-only transformer: token + position embedding → ``depth`` blocks, each an
    attention and an MLP residual branch (a tower of n = 2·depth modules; the scaling's λ
    uses n) → [final LayerNorm] → Linear head at the last position.

    Contract with the data: ``input_shape = (T,)``, the sequence length, and inputs are
    token ids (N, T) below ``vocab_size``, which the caller passes from the data set (the
    config does not set it). ``context`` (default T) is the number of positions the
    position embedding holds, at least T.

    Options (``arch_options.transformer``): ``heads`` (default 1, must divide the width),
    ``norm`` (TRANSFORMER_NORMS), ``activation`` of the MLP branches (default gelu, the
    exact one), ``init`` (TRANSFORMER_INITS), ``context``.

    Scalings: one, inv_sqrt, inv and a float λ scale every branch; ``bn`` is pre-LN at
    λ = 1, the normalised reference (the role BatchNorm plays for the MLP and conv towers);
    ``skipinit`` is ReZero, a learned α_l per branch starting at 0 (with the default
    ``norm``, none, as in ReZero).
    """
    key = "arch_options.transformer"
    scaling = parse_scaling(scaling)
    if len(input_shape) != 1:
        raise ValueError(
            f"transformer needs token sequences, input_shape (T,), got {tuple(input_shape)}"
        )
    (length,) = input_shape
    if not (isinstance(vocab_size, int) and vocab_size >= 1):
        raise ValueError(
            f"transformer needs vocab_size (the data set's number of token ids), got {vocab_size!r}"
        )
    if not (isinstance(heads, int) and heads >= 1 and width % heads == 0):
        raise ValueError(
            f"{key}.heads must be a positive divisor of the width {width}, got {heads!r}"
        )
    if norm is None:
        norm = "pre_ln" if scaling == "bn" else "none"
    if norm not in TRANSFORMER_NORMS:
        raise ValueError(f"{key}.norm must be one of {', '.join(TRANSFORMER_NORMS)}, got {norm!r}")
    if scaling == "bn" and norm != "pre_ln":
        raise ValueError(
            f"scaling bn is the pre-LN transformer at λ = 1; it contradicts {key}.norm: {norm}"
        )
    if init not in TRANSFORMER_INITS:
        raise ValueError(f"{key}.init must be one of {', '.join(TRANSFORMER_INITS)}, got {init!r}")
    context = length if context is None else context
    if not (isinstance(context, int) and context >= length):
        raise ValueError(
            f"{key}.context must be an integer at least the data's sequence length {length}, "
            f"got {context!r}"
        )
    pre_ln = norm == "pre_ln"
    stem = nn.Sequential(TokenEmbedding(vocab_size, context, width), AtLeastFloat32())
    branches = [
        branch
        for _ in range(depth)
        for branch in transformer_branches(width, heads, pre_ln, activation)
    ]
    head = nn.Sequential(
        LastPosition(), *([nn.LayerNorm(width)] if pre_ln else []), nn.Linear(width, num_classes)
    )
    model = ResNet(stem, ResidualTower(branches, scaling), head)
    return transformer_init_(model, init, depth)


#: Builders ``f(input_shape, num_classes, width, depth, scaling, **options) -> ResNet``.
ARCHITECTURES = {"mlp": mlp_resnet, "conv": conv_resnet, "transformer": transformer_resnet}


def build_model(arch, input_shape, num_classes, width, depth, scaling, **options):
    """Build a freshly initialised model; the caller seeds torch beforehand.

    ``options`` are architecture-specific settings from the config: ``activation`` (all;
    see ACTIVATIONS), a conv stem's ``stem_stride``, and the transformer's ``heads``,
    ``norm``, ``init``, ``context`` plus ``vocab_size``, which the caller takes from the
    data set (see ``transformer_resnet``).
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown arch {arch!r}: expected one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch](tuple(input_shape), num_classes, width, depth, scaling, **options)
