"""Train grid cells: one obvious loop, whole data set on the device, no DataLoader.

The loop (``train_pack``) trains a pack of cells that differ only in their scaling
(packs.py) in lockstep; a cell alone (``train_run``) is a pack of one. SGD with
(Nesterov) momentum, linear warm-up then cosine decay to zero, updated every step; the
gradient norm clipped where the cell says so (``grad_clip``, the λ sweep).
Deterministic given each cell's seed (weights, batch order and augmentation all derive
from it). A non-finite loss is a result, not a crash: the run stops and is recorded as
diverged.

Speed options of the config's ``training`` section (all off unless set): ``bf16``
(autocast), ``channels_last`` (the memory layout tensor cores want for convolutions),
``compile`` (``torch.compile`` of each residual branch: the branches are identical, so
one compiled graph serves all of them, where compiling a 1000-branch model whole would
take minutes) and ``cuda_graph`` (each step's forward and backward replayed as one CUDA
graph, see ``TrainStep``). Data sets that ask for it are augmented on the device, batch at once.
An interrupted run resumes from its checkpoint and ends exactly as if never stopped
(checkpoint.py).
"""

import logging
import math
import time

import torch
import torch.nn.functional as F

from resdepth import checkpoint
from resdepth.augment import random_crop_flip
from resdepth.complexity import GCTracker
from resdepth.models import build_model
from resdepth.packed import PackedResNet, member_losses
from resdepth.scalings import branch_scale
from resdepth.settings import result_settings

log = logging.getLogger(__name__)

HISTORY_COLUMNS = (
    "epoch",
    "step",
    "lr",
    "train_loss",
    "train_acc",
    "test_loss",
    "test_acc",
    "wall_time_s",
    "gc",  # empty where GC was not measured (see complexity.GCTracker)
    "gc_stderr",
)


def pick_device(name="auto"):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("training.device is 'cuda' but no CUDA device is available")
    return torch.device(name)


def lr_at(step, total_steps, warmup_steps, base_lr):
    """Linear warm-up over ``warmup_steps``, then cosine decay to 0 at ``total_steps``."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def precision(device, settings):
    """The autocast context of every forward pass: bf16 if the config asks for it.

    No cast cache: each weight is cast once per forward anyway, and CUDA-graph capture
    cannot hold one.
    """
    bf16 = settings.get("bf16", False)
    return torch.autocast(device.type, torch.bfloat16, enabled=bf16, cache_enabled=False)


def apply_speed_options(model, settings):
    """Memory layout and compilation the config asks for; returns ``model`` (same object,
    so its ``state_dict`` keys do not change)."""
    if settings.get("channels_last", False):
        model.to(memory_format=torch.channels_last)
    if settings.get("compile", False):
        # The bound forward, not the module: state_dict keys stay as they are (no
        # ``_orig_mod``), and the identical branches share one compiled graph.
        for branch in model.tower.branches:
            branch.forward = torch.compile(branch.forward)
    return model


def forward_backward(model, inputs, y, settings, loss_of=None):
    """Loss of one batch, with its gradients added to the parameters' ``.grad``; returns
    the detached (loss, logits). ``loss_of(logits, y)`` is the mean cross-entropy unless
    given (a packed model's: one loss per member, and their sum is differentiated, so
    each member's gradient is that of its own loss)."""
    with precision(inputs.device, settings):
        logits = model(inputs)
    loss = (loss_of or cross_entropy)(logits, y)
    loss.sum().backward()
    return loss.detach(), logits.detach()


def cross_entropy(logits, y):
    return F.cross_entropy(logits.float(), y)


class TrainStep:
    """Gradients of one batch, computed eagerly or, with ``cuda_graph``, by a CUDA graph.

    Why a graph: at width 64 a residual module is a handful of small kernels, and a deep
    tower spends its step launching them one by one from Python. With ``cuda_graph`` (on
    a CUDA device; elsewhere it does nothing) the first batch of ``batch_size`` is
    captured once and every later one is a single replay. The optimiser step stays eager:
    its learning rate changes every step. A replay overwrites the gradient tensors that
    the graph owns; if anything set a ``.grad`` to None or replaced it since (e.g. a
    ``zero_grad()``, whose default is ``set_to_none=True``), the graph's tensor is put
    back before the replay, else the optimiser would skip that parameter for good. A
    batch of another size (an epoch's last) runs eagerly into those same tensors, zeroed
    first. Memory: the warm-up's and each eager batch's cached blocks are handed back to
    the driver (``empty_cache``), so they are not held on top of the graph's own pool
    (at depth 1000 each set is ~17 GB); the eager batch still needs its activations
    while it runs. The returned loss and logits are copies: the next replay overwrites
    the graph's own.
    """

    WARMUP_PASSES = 3  # eager passes before capture: cuDNN autotuning, lazy allocations

    def __init__(self, model, settings, batch_size, device, loss_of=None):
        self.model, self.settings, self.batch_size = model, settings, batch_size
        self.loss_of = loss_of  # see forward_backward
        self.use_graph = settings.get("cuda_graph", False) and device.type == "cuda"
        self.graph = None

    def __call__(self, inputs, y):
        """(loss, logits) of the batch, its gradients in the parameters' ``.grad``."""
        if self.use_graph and self.graph is None and len(y) == self.batch_size:
            self.capture(inputs, y)
        if self.graph is None:
            self.model.zero_grad(set_to_none=True)
            return forward_backward(self.model, inputs, y, self.settings, self.loss_of)
        for param, grad in self.graph_grads:  # the tensors the graph writes
            if param.grad is not grad:
                param.grad = grad
        if len(y) == self.batch_size:
            self.inputs.copy_(inputs)
            self.y.copy_(y)
            self.graph.replay()
            return self.loss.clone(), self.logits.clone()
        self.model.zero_grad(set_to_none=False)  # keep the graph's tensors
        result = forward_backward(self.model, inputs, y, self.settings, self.loss_of)
        torch.cuda.empty_cache()  # the eager batch's activations: not kept beside the pool
        return result

    def capture(self, inputs, y):
        self.inputs, self.y = inputs.clone(), y.clone()
        buffers = [b.clone() for b in self.model.buffers()]  # BN statistics, counters
        side = torch.cuda.Stream()  # warm-up off the default stream, as capture requires
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.WARMUP_PASSES):
                self.model.zero_grad(set_to_none=True)
                forward_backward(self.model, self.inputs, self.y, self.settings, self.loss_of)
        torch.cuda.current_stream().wait_stream(side)
        with torch.no_grad():  # the warm-up passes must leave no trace in the run
            for buffer, saved in zip(self.model.buffers(), buffers, strict=True):
                buffer.copy_(saved)
        self.model.zero_grad(set_to_none=True)  # capture allocates the graph's gradients
        torch.cuda.empty_cache()  # the warm-up's activations: not kept beside the pool
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.loss, self.logits = forward_backward(
                self.model, self.inputs, self.y, self.settings, self.loss_of
            )
        self.graph_grads = [(p, p.grad) for p in self.model.parameters() if p.grad is not None]


@torch.no_grad()
def clip_gradients(model, max_norm):
    """Scale the gradients down to a total 2-norm of at most ``max_norm`` (None: leave
    them). Keeps large-λ runs of the λ sweep finite past the stability limit, where a
    single step would otherwise blow the weights up. No host sync."""
    if max_norm:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)


def evaluate(model, data, x, y, batch_size, settings=None):
    """Mean loss and accuracy of ``model`` in eval mode over (x, y)."""
    model.eval()
    loss_sum = torch.zeros((), device=y.device)
    correct = torch.zeros((), device=y.device)
    for i in range(0, len(y), batch_size):
        with precision(y.device, settings or {}):
            logits = model(data.inputs(x[i : i + batch_size])).float()
        target = y[i : i + batch_size]
        loss_sum += F.cross_entropy(logits, target, reduction="sum")
        correct += (logits.argmax(1) == target).sum()
    return loss_sum.item() / len(y), correct.item() / len(y)


class Member:
    """One run of a pack: its own model, optimiser, data stream, GC tracker and record.

    Built exactly as a run alone would build it: the weights drawn after
    ``torch.manual_seed(seed)``, batches and augmentation from a generator of its own.
    """

    def __init__(self, cell, data, settings, arch_options, device):
        self.cell = cell
        torch.manual_seed(cell["seed"])
        model = build_model(
            cell["arch"],
            data.input_shape,
            data.num_classes,
            cell["width"],
            cell["depth"],
            cell["scaling"],
            **arch_options,
        )
        self.model = apply_speed_options(model.to(device), settings)
        self.optimizer = sgd(self.model, cell["lr"], settings)
        self.batch_order = torch.Generator(device=device).manual_seed(cell["seed"])
        self.train_step = TrainStep(self.model, settings, cell["batch_size"], device)
        self.gc = GCTracker.from_settings(settings.get("gc"), data, cell)  # None: no GC work
        self.history, self.diverged_at = [], None  # diverged_at: (epoch, step)
        # The current epoch: batch order, loss per step, correct predictions.
        n_train, steps = len(data.y_train), math.ceil(len(data.y_train) / cell["batch_size"])
        self.perm = torch.zeros(n_train, dtype=torch.long, device=device)
        self.losses = torch.zeros(steps, device=device)
        self.correct = torch.zeros((), device=device)

    @property
    def generators(self):
        return [self.batch_order, self.gc.generator] if self.gc else [self.batch_order]

    def start_epoch(self):
        self.model.train()
        self.perm = torch.randperm(
            len(self.perm), device=self.perm.device, generator=self.batch_order
        )
        self.losses = torch.zeros_like(self.losses)
        self.correct = torch.zeros_like(self.correct)

    def batch(self, data, i):
        """(inputs, labels) of batch ``i`` of the epoch, augmented if the data ask for it."""
        batch_size = self.cell["batch_size"]
        idx = self.perm[i * batch_size : (i + 1) * batch_size]
        x, y = data.x_train[idx], data.y_train[idx]
        if data.augment:
            x = random_crop_flip(x, self.batch_order)  # one seeded stream for the data
        return data.inputs(x), y

    def record(self, i, loss, logits, y):
        self.losses[i] = loss
        self.correct += (logits.argmax(-1) == y).sum()

    def train_batch(self, data, i, lr):
        """SGD step of its own model on batch ``i`` of the epoch at learning rate ``lr``."""
        inputs, y = self.batch(data, i)
        set_lr(self.optimizer, lr)
        loss, logits = self.train_step(inputs, y)
        clip_gradients(self.model, self.cell.get("grad_clip"))
        self.optimizer.step()
        self.record(i, loss, logits, y)


class PackedMembers:
    """The ``packed`` backend: the members' models trained as one ``PackedResNet``.

    Each step feeds every member its own batch (a diverged member's too: its numbers
    stay its own) and differentiates the sum of the members' losses; at the end of an
    epoch the members' models get their weights back for evaluation, GC and outputs.
    """

    def __init__(self, members, settings, device):
        if settings.get("compile", False):
            raise ValueError("training.compile is not supported with pack_backend: packed")
        if any(m.cell.get("grad_clip") for m in members):  # one norm would mix the members
            raise ValueError("capacity.grad_clip is not supported with pack_backend: packed")
        model = PackedResNet([m.model for m in members]).to(device)
        self.model = apply_speed_options(model, settings)
        cell = members[0].cell
        self.optimizer = sgd(self.model, cell["lr"], settings)
        self.train_step = TrainStep(
            self.model, settings, cell["batch_size"], device, loss_of=member_losses
        )

    def train_batch(self, members, data, i, lr):
        batches = [m.batch(data, i) for m in members]
        inputs = torch.stack([x for x, _ in batches], dim=1)  # (N, K, ...)
        y = torch.stack([y for _, y in batches], dim=1)
        set_lr(self.optimizer, lr)
        losses, logits = self.train_step(inputs, y)
        self.optimizer.step()
        for k, m in enumerate(members):
            m.record(i, losses[k], logits[:, k], y[:, k])

    def unpack(self, members):
        """Copy each member's packed weights into its own model, but for those recorded
        as diverged, whose model keeps the weights of the epoch they diverged in."""
        for k, m in enumerate(members):
            if m.diverged_at is None:
                m.model.load_state_dict(self.model.member_state_dict(k))


def sgd(model, lr, settings):
    return torch.optim.SGD(
        model.parameters(),
        lr=lr,
        momentum=settings["momentum"],
        nesterov=settings["nesterov"],
        weight_decay=settings["weight_decay"],
        foreach=True,  # one fused update per step instead of one per tensor
    )


def set_lr(optimizer, lr):
    for group in optimizer.param_groups:
        group["lr"] = lr


class Optimizers:
    """Several optimisers as one object with a ``state_dict``, for the checkpoint."""

    def __init__(self, optimizers):
        self.optimizers = list(optimizers)

    def state_dict(self):
        return [o.state_dict() for o in self.optimizers]

    def load_state_dict(self, states):
        for optimizer, state in zip(self.optimizers, states, strict=True):
            optimizer.load_state_dict(state)


def train_run(cell, data, settings, arch_options=None, device=None, checkpoint_path=None):
    """Train the model of ``cell`` alone (a pack of one); return (metrics, history, model)."""
    (result,) = train_pack([cell], data, settings, arch_options, device, checkpoint_path)
    return result


def train_pack(cells, data, settings, arch_options=None, device=None, checkpoint_path=None):
    """Train the models of ``cells`` in lockstep; return one (metrics, history, model) per
    cell.

    ``cells`` share the number of epochs, batch size and learning rate (packs.pack_key).
    Every member draws its own batches and augmentation from a generator of its own.
    ``settings["pack_backend"]`` says how they are stepped: ``loop`` (the default) steps
    each member's own model with its own optimiser, one after the other, so each ends
    bit for bit as it would alone; ``packed`` trains them as one model (PackedMembers,
    packed.py: grouped convolutions, batched matmuls), equal to that up to rounding. No
    number of one member depends on another's. A member whose loss turns non-finite is
    recorded as diverged at the end of that epoch, and its model keeps that epoch's
    weights; the pack stops when every member has diverged.

    ``settings`` is the config's ``training`` section; ``data`` a ``Prepared`` data set
    already on ``device``. With ``checkpoint_path``, the pack resumes from the checkpoint
    there if any, saves one every ``settings["checkpoint_every"]`` epochs, and on a stop
    request (``checkpoint.stop_requested``) saves one and raises ``checkpoint.Interrupted``.
    """
    device = device or data.y_train.device
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: autotune each conv once
    epochs, batch_size, lr = (cells[0][key] for key in ("epochs", "batch_size", "lr"))
    if any((c["epochs"], c["batch_size"], c["lr"]) != (epochs, batch_size, lr) for c in cells):
        raise ValueError("a pack's runs must share epochs, batch_size and lr (packs.pack_key)")
    members = [Member(cell, data, settings, arch_options or {}, device) for cell in cells]
    backend = settings.get("pack_backend", "loop")
    packed = PackedMembers(members, settings, device) if backend == "packed" else None

    n_train = len(data.y_train)
    steps_per_epoch = math.ceil(n_train / batch_size)
    total_steps = steps_per_epoch * epochs
    warmup_steps = round(settings["warmup_epochs"] * steps_per_epoch)

    identity = {
        "cells": cells,
        "settings": result_settings(settings),  # a checkpoint outlives a change of the rest
        "arch_options": arch_options or {},
    }
    models = [m.model for m in members] + ([packed.model] if packed else [])
    optimizers = [packed.optimizer] if packed else [m.optimizer for m in members]
    checkpointer = checkpoint.Checkpointer(
        checkpoint_path,
        identity,
        torch.nn.ModuleList(models),
        Optimizers(optimizers),
        [g for m in members for g in m.generators],
    )
    resumed = checkpointer.restore(device)  # a fresh start when there is no checkpoint
    if resumed["history"]:  # the members' records as the checkpoint has them
        for k, m in enumerate(members):
            m.history, m.diverged_at = resumed["history"][k], resumed["diverged"][k]
    step, start = resumed["step"], time.perf_counter() - resumed["seconds"]

    def records():
        """The members' histories and divergence, which a checkpoint saves with the rest."""
        return [m.history for m in members], {"diverged": [m.diverged_at for m in members]}

    for m in members:
        if m.gc and not m.history:  # epoch 0: the initialisation (a resumed run has it)
            init = {"epoch": 0, "step": 0, **m.gc.measure(m.model, 0)}
            m.history.append({**init, "wall_time_s": time.perf_counter() - start})
    for epoch in range(resumed["epoch"], epochs + 1):
        active = [m for m in members if m.diverged_at is None]
        if not active:
            break
        first_batch = resumed["batches_done"] if epoch == resumed["epoch"] else 0
        for k, m in enumerate(members):
            if m.diverged_at is not None:
                continue
            if first_batch:  # resuming mid-epoch
                m.model.train()
                m.perm, m.losses = resumed["perm"][k], resumed["losses"][k]
                m.correct = resumed["correct"][k]
            else:
                m.start_epoch()
        for i in range(first_batch, steps_per_epoch):
            step_lr = lr_at(step, total_steps, warmup_steps, lr)
            if packed:
                packed.train_batch(members, data, i, step_lr)
            else:
                for m in active:
                    m.train_batch(data, i, step_lr)
            step += 1
            if checkpoint.stop_requested():
                histories, diverged = records()
                in_epoch = {
                    "batches_done": i + 1,
                    "perm": torch.stack([m.perm for m in members]),
                    "losses": torch.stack([m.losses for m in members]),
                    "correct": torch.stack([m.correct for m in members]),
                }
                seconds = time.perf_counter() - start
                checkpointer.stop(epoch, step, histories, seconds, **in_epoch, **diverged)

        if packed:
            packed.unpack(members)
        for m in active:
            end_epoch(m, data, settings, epoch, step, steps_per_epoch, time.perf_counter() - start)
        every = settings.get("checkpoint_every", 0)
        still_training = any(m.diverged_at is None for m in members)
        if every and epoch % every == 0 and epoch < epochs and still_training:
            histories, diverged = records()
            seconds = time.perf_counter() - start
            checkpointer.save(epoch + 1, step, histories, seconds, **diverged)

    wall_time_s = time.perf_counter() - start
    return [member_result(m, device, wall_time_s) for m in members]


def end_epoch(member, data, settings, epoch, step, steps_per_epoch, seconds):
    """Check the member's epoch for a non-finite loss (one host sync), then evaluate it
    and append its history row; or record it as diverged."""
    m, cell = member, member.cell
    finite = torch.isfinite(m.losses)
    if not finite.all():
        first_bad = int((~finite).nonzero()[0])
        m.diverged_at = (epoch, (epoch - 1) * steps_per_epoch + first_bad + 1)
        log.info(
            "%s: epoch %d: non-finite loss at step %d, run diverged", run_name(cell), *m.diverged_at
        )
        return
    test_loss, test_acc = evaluate(
        m.model, data, data.x_test, data.y_test, settings["eval_batch_size"], settings
    )
    row = {
        "epoch": epoch,
        "step": step,
        "lr": m.optimizer.param_groups[0]["lr"],
        "train_loss": m.losses.mean().item(),
        "train_acc": m.correct.item() / len(data.y_train),
        "test_loss": test_loss,
        "test_acc": test_acc,
        "wall_time_s": seconds,
    }
    if m.gc and m.gc.due(epoch):
        row.update(m.gc.measure(m.model, epoch))
    m.history.append(row)
    log.info(
        "%s: epoch %d/%d  step %d  lr %.4f  train_loss %.4f  train_acc %.4f  "
        "test_loss %.4f  test_acc %.4f  %.1fs",
        run_name(cell),
        epoch,
        cell["epochs"],
        *(row[k] for k in ("step", "lr", "train_loss", "train_acc")),
        *(row[k] for k in ("test_loss", "test_acc", "wall_time_s")),
    )


def run_name(cell):
    """A short name of a member in the log: its scaling and seed."""
    return f"{cell['scaling']} s{cell['seed']}"


def member_result(member, device, wall_time_s):
    """(metrics, history, model) of a finished member, as a run alone reports them."""
    m, cell = member, member.cell
    final = m.history[-1] if m.history and m.diverged_at is None else {}
    metrics = {
        **cell,
        "lambda": branch_scale(cell["scaling"], cell["depth"]),
        "status": "diverged" if m.diverged_at else "ok",
        "diverged_epoch": m.diverged_at[0] if m.diverged_at else None,
        "diverged_step": m.diverged_at[1] if m.diverged_at else None,
        **{k: final.get(k) for k in ("train_loss", "train_acc", "test_loss", "test_acc")},
        "wall_time_s": wall_time_s,
        "n_params": sum(p.numel() for p in m.model.parameters()),
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
    }
    return metrics, m.history, m.model
