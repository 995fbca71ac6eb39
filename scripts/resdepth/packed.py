"""The ``packed`` backend (``training.pack_backend: packed``): a pack's K runs trained as
one model, ``PackedRuns``, a trainee of ``train.train``. All of it lives here, so it can be
switched on, or deleted, in one move.

The members of a pack share arch, depth, width and module family (packs.pack_key), so
their layers line up. Member k's Linear layers become slice k of a batched matmul, its
convolutions group k of a grouped convolution, its BatchNorm channels a slice of one
wider BatchNorm (statistics are per channel, so still the member's own), its λ (or
SkipInit α) row k of a (K, n) tensor. Activations are laid out (N, K, ...): member k's
batch in slot k; the logits come out (N, K, classes). No operation mixes members, so a
member's numbers (a NaN included) never reach another's. Only the order of floating-point
operations inside a kernel differs from a member's own model, so the results agree to
rounding, not bit for bit.
"""

import torch
import torch.nn.functional as F
from torch import nn

from resdepth.models import AtLeastFloat32
from resdepth.train import Run, TrainStep, apply_speed_options, make_optimizer, set_lr


class PackedRuns:
    """A pack's runs trained as one ``PackedResNet``: the trainee of the packed backend.

    Each run is built as it would be alone (``train.Run``: its weights, batch stream, GC
    tracker and record). Each step feeds every run its own batch (a diverged run's too:
    its numbers stay its own) and differentiates the sum of the runs' losses; at the end
    of an epoch the runs' own models get their weights back (``sync``) for evaluation, GC
    and outputs.
    """

    def __init__(self, cells, data, settings, arch_options=None, device=None):
        if settings.get("compile", False):
            raise ValueError("training.compile is not supported with pack_backend: packed")
        if any(cell.get("grad_clip") for cell in cells):  # one norm would mix the runs
            raise ValueError("capacity.clipped is not supported with pack_backend: packed")
        epochs, batch_size, lr = (cells[0][key] for key in ("epochs", "batch_size", "lr"))
        if any((c["epochs"], c["batch_size"], c["lr"]) != (epochs, batch_size, lr) for c in cells):
            raise ValueError("a pack's runs must share epochs, batch_size and lr (packs.pack_key)")
        self.runs = [Run(cell, data, settings, arch_options, device) for cell in cells]
        self.device = self.runs[0].device
        model = PackedResNet([run.model for run in self.runs]).to(self.device)
        self.packed = apply_speed_options(model, settings)
        # What a checkpoint saves: the runs' own models (a diverged run's keeps the
        # weights of its last epoch), then the packed model.
        self.model = nn.ModuleList([*(run.model for run in self.runs), self.packed])
        self.optimizer = make_optimizer(self.packed, lr, settings)
        self.train_step = TrainStep(
            self.packed, settings, batch_size, self.device, loss_of=member_losses
        )

    def step(self, data, i, lr):
        """One optimiser step of the packed model on batch ``i`` of each run's epoch."""
        batches = [run.batch(data, i) for run in self.runs]
        inputs = torch.stack([x for x, _ in batches], dim=1)  # (N, K, ...)
        y = torch.stack([y for _, y in batches], dim=1)
        set_lr(self.optimizer, lr)
        losses, logits = self.train_step(inputs, y)
        self.optimizer.step()
        for k, run in enumerate(self.runs):
            run.record(i, losses[k], logits[:, k], y[:, k])

    def sync(self):
        """Copy each run's packed weights into its own model, but for those recorded as
        diverged, whose model keeps the weights of the epoch they diverged in."""
        for k, run in enumerate(self.runs):
            if run.diverged_at is None:
                run.model.load_state_dict(self.packed.member_state_dict(k))


class PackedLinear(nn.Module):
    """K Linear layers as one batched matmul over (N, K, in) → (N, K, out)."""

    def __init__(self, linears):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in linears]))
        biases = [m.bias for m in linears]
        self.bias = None if biases[0] is None else nn.Parameter(torch.stack(biases).detach())

    def forward(self, x):
        y = torch.einsum("nki,koi->nko", x, self.weight)
        return y if self.bias is None else y + self.bias

    def member_state(self, k, grads=False):
        tensors = {"weight": self.weight, "bias": self.bias}
        return {n: _member(t, k, grads) for n, t in tensors.items() if t is not None}


class PackedConv2d(nn.Conv2d):
    """K convolutions as one grouped convolution: member k's channels are group k."""

    def __init__(self, convs):
        c = convs[0]
        k = len(convs)
        super().__init__(
            k * c.in_channels,
            k * c.out_channels,
            c.kernel_size,
            c.stride,
            c.padding,
            groups=k,
            bias=c.bias is not None,
        )
        self.members = k
        with torch.no_grad():
            self.weight.copy_(torch.cat([m.weight for m in convs]))
            if self.bias is not None:
                self.bias.copy_(torch.cat([m.bias for m in convs]))

    def forward(self, x):
        return _channelwise(super().forward, x)

    def member_state(self, k, grads=False):
        return _channel_slices(self, k, grads, ("weight", "bias"))


class PackedBatchNorm(nn.modules.batchnorm._BatchNorm):
    """K BatchNorms as one over K·C channels: each channel keeps its own statistics."""

    def __init__(self, norms):
        n = norms[0]
        super().__init__(len(norms) * n.num_features, n.eps, n.momentum)
        self.members = len(norms)
        with torch.no_grad():
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(self, name).copy_(torch.cat([getattr(m, name) for m in norms]))
            self.num_batches_tracked.copy_(n.num_batches_tracked)

    def _check_input_dim(self, x):
        pass

    def forward(self, x):
        return _channelwise(super().forward, x)

    def member_state(self, k, grads=False):
        state = _channel_slices(self, k, grads, ("weight", "bias"))
        if not grads:
            state.update(_channel_slices(self, k, False, ("running_mean", "running_var")))
            state["num_batches_tracked"] = self.num_batches_tracked.clone()
        return state


class PackedAvgPool(nn.AdaptiveAvgPool2d):
    """Global average pooling of each member's channels."""

    def forward(self, x):
        return _channelwise(super().forward, x)


def _channelwise(op, x):
    """``op`` on (N, K·C, ...) for activations laid out (N, K, C, ...)."""
    n, k = x.shape[:2]
    y = op(x.reshape(n, k * x.shape[2], *x.shape[3:]))
    return y.reshape(n, k, -1, *y.shape[2:])


def _member(tensor, k, grads):
    source = tensor.grad if grads else tensor
    return source[k].detach().clone()


def _channel_slices(module, k, grads, names):
    """Member k's slice (along dim 0) of each named tensor of ``module``."""
    state = {}
    for name in names:
        tensor = getattr(module, name)
        if tensor is None:
            continue
        source = tensor.grad if grads else tensor
        size = len(source) // module.members
        state[name] = source[k * size : (k + 1) * size].detach().clone()
    return state


def pack_layer(layers):
    """The packed equivalent of K corresponding layers of the members' models."""
    first = layers[0]
    if isinstance(first, nn.Sequential):
        return nn.Sequential(*(pack_layer(group) for group in zip(*layers, strict=True)))
    if isinstance(first, nn.Linear):
        return PackedLinear(layers)
    if isinstance(first, nn.Conv2d):
        return PackedConv2d(layers)
    if isinstance(first, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return PackedBatchNorm(layers)
    if isinstance(first, nn.AdaptiveAvgPool2d):
        return PackedAvgPool(first.output_size)
    if isinstance(first, nn.Flatten):
        return nn.Flatten(start_dim=2)  # keep the member axis
    if isinstance(first, (nn.ReLU, AtLeastFloat32)):
        return first  # elementwise: any layout
    raise TypeError(f"cannot pack a {type(first).__name__}")


class PackedResNet(nn.Module):
    """``head(tower(stem(x)))`` of K members at once; x is (N, K, ...)."""

    def __init__(self, models):
        super().__init__()
        towers = [m.tower for m in models]
        shapes = {tuple((n, p.shape) for n, p in m.state_dict().items()) for m in models}
        if len(shapes) != 1:
            raise ValueError(
                "packed members need models of one shape: same arch, depth, "
                "width and module family (packs.pack_key)"
            )
        self.members = len(models)
        self.stem = pack_layer([m.stem for m in models])
        layers = zip(*(t.branches for t in towers), strict=True)  # branch l of each member
        self.branches = nn.ModuleList(pack_layer(list(group)) for group in layers)
        self.head = pack_layer([m.head for m in models])
        self.scaling = towers[0].scaling
        scales = torch.stack([t.scales().detach() for t in towers], dim=1)  # (n, K)
        if self.scaling == "skipinit":
            self.alpha = nn.Parameter(scales.clone())
        else:
            self.register_buffer("lam", scales.clone())

    def scales(self):
        return self.alpha if self.scaling == "skipinit" else self.lam

    def forward(self, x):
        x = self.stem(x)
        for branch, lam in zip(self.branches, self.scales(), strict=True):
            x = x + lam.to(x.dtype).view(1, -1, *[1] * (x.dim() - 2)) * branch(x)
        return self.head(x)

    def member_state_dict(self, k, grads=False):
        """Member k's ``state_dict`` under its own model's names (with ``grads``: its
        parameters' gradients instead, parameters only)."""
        state = {}
        for prefix, part in (("stem", self.stem), ("head", self.head)):
            state.update(_part_state(prefix, part, k, grads))
        for i, branch in enumerate(self.branches):
            state.update(_part_state(f"tower.branches.{i}", branch, k, grads))
        if self.scaling == "skipinit":
            source = self.alpha.grad if grads else self.alpha
            state["tower.alpha"] = source[:, k].detach().clone()
        elif not grads:
            state["tower.lam"] = self.lam[:, k].clone()
        return state


def _part_state(prefix, part, k, grads):
    state = {}
    for name, module in part.named_modules():
        if hasattr(module, "member_state"):
            path = f"{prefix}.{name}" if name else prefix
            state.update({f"{path}.{n}": t for n, t in module.member_state(k, grads).items()})
    return state


def member_losses(logits, y):
    """Per-member mean cross-entropy (K,) of logits (N, K, C) against labels (N, K)."""
    return F.cross_entropy(logits.float().permute(0, 2, 1), y, reduction="none").mean(0)
