"""Train grid runs: one obvious loop, whole data set on the device, no DataLoader.

The loop (``train``) trains one trainee: a ``Run`` (one grid cell's model, optimiser,
batch stream, GC tracker and record) or, with ``training.pack_backend: packed``, a pack's
runs as one model (packed.py). A job trains its trainees one after another
(train_job.py). SGD with (Nesterov) momentum, or AdamW (``training.optimizer``), linear
warm-up then cosine decay to zero, updated every step; the gradient norm clipped where the
cell says so (``grad_clip``, the λ sweep). Deterministic given each cell's seed (weights,
batch order and augmentation all derive from it). A non-finite loss is a result, not a
crash: the run stops and is recorded as diverged.

Speed options of the config's ``training`` section (all off unless set): ``bf16``
(autocast), ``channels_last`` (the memory layout tensor cores want for convolutions),
``compile`` (``torch.compile`` of each residual branch: the branches are identical, so
one compiled graph serves all of them, where compiling a 1000-branch model whole would
take minutes) and ``cuda_graph`` (each step's forward and backward replayed as one CUDA
graph, see ``TrainStep``). Data sets that ask for it are augmented on the device, batch at once.
An interrupted trainee resumes from its checkpoint and ends exactly as if never stopped
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
    "logit_var",  # the logits' variance where GC was measured: GC / logit_var is scale-free
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


def _eval_batches(model, data, x, y, batch_size, settings):
    """(logits, targets) of ``model`` in eval mode, batch by batch over (x, y)."""
    model.eval()
    for i in range(0, len(y), batch_size):
        with precision(y.device, settings or {}):
            logits = model(data.inputs(x[i : i + batch_size])).float()
        yield logits, y[i : i + batch_size]


def evaluate(model, data, x, y, batch_size, settings=None):
    """Mean loss and accuracy of ``model`` in eval mode over (x, y)."""
    loss_sum = torch.zeros((), device=y.device)
    correct = torch.zeros((), device=y.device)
    for logits, target in _eval_batches(model, data, x, y, batch_size, settings):
        loss_sum += F.cross_entropy(logits, target, reduction="sum")
        correct += (logits.argmax(1) == target).sum()
    return loss_sum.item() / len(y), correct.item() / len(y)


@torch.no_grad()
def test_outcomes(model, data, batch_size, settings=None):
    """Per test example, in test-set order, whether ``model`` predicts its class: two
    runs scored on the same images differ only where one of them is right
    (fits.paired_test_variance). A bool array on the CPU."""
    outcomes = [
        logits.argmax(1) == target
        for logits, target in _eval_batches(
            model, data, data.x_test, data.y_test, batch_size, settings
        )
    ]
    return torch.cat(outcomes).cpu().numpy()


class Run:
    """One training run: its own model, optimiser, batch stream, GC tracker and record.

    The weights are drawn after ``torch.manual_seed(seed)``, batches and augmentation
    come from a generator of its own, so a run ends the same whatever was trained before
    it in the process. Trained alone it is a trainee of its own (``runs`` is itself).
    """

    def __init__(self, cell, data, settings, arch_options=None, device=None):
        self.cell, self.arch_options = cell, arch_options or {}
        self.device = device or data.y_train.device
        torch.manual_seed(cell["seed"])
        model = build_model(
            cell["arch"],
            data.input_shape,
            data.num_classes,
            cell["width"],
            cell["depth"],
            cell["scaling"],
            **data.model_options(self.arch_options),  # a token data set's vocabulary too
        )
        self.model = apply_speed_options(model.to(self.device), settings)
        self.optimizer = make_optimizer(self.model, cell["lr"], settings)
        self.batch_order = torch.Generator(device=self.device).manual_seed(cell["seed"])
        self.train_step = TrainStep(self.model, settings, cell["batch_size"], self.device)
        self.gc = GCTracker.from_settings(settings.get("gc"), data, cell)  # None: no GC work
        self.history, self.diverged_at = [], None  # diverged_at: (epoch, step)
        self.wall_time_s = None  # set when training ends
        # The current epoch: batch order, loss per step, correct predictions.
        n_train, steps = len(data.y_train), math.ceil(len(data.y_train) / cell["batch_size"])
        self.perm = torch.zeros(n_train, dtype=torch.long, device=self.device)
        self.losses = torch.zeros(steps, device=self.device)
        self.correct = torch.zeros((), device=self.device)

    @property
    def runs(self):
        return [self]

    @property
    def generators(self):
        return [self.batch_order, self.gc.generator] if self.gc else [self.batch_order]

    def progress(self):
        """Its record and its place in the epoch, as a checkpoint saves them."""
        return dict(
            history=self.history,
            diverged=self.diverged_at,
            perm=self.perm,
            losses=self.losses,
            correct=self.correct,
        )

    def resume(self, progress):
        """Take up the record and epoch that ``progress`` (a checkpoint's) holds."""
        self.history, self.diverged_at = progress["history"], progress["diverged"]
        self.perm, self.losses, self.correct = (
            progress[k].to(self.device) for k in ("perm", "losses", "correct")
        )
        self.model.train()

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

    def step(self, data, i, lr):
        """One optimiser step of its model on batch ``i`` of the epoch at learning rate
        ``lr``."""
        inputs, y = self.batch(data, i)
        set_lr(self.optimizer, lr)
        loss, logits = self.train_step(inputs, y)
        clip_gradients(self.model, self.cell.get("grad_clip"))
        self.optimizer.step()
        self.record(i, loss, logits, y)

    def sync(self):
        """Its model holds its weights already (a packed trainee copies them out here)."""


def make_optimizer(model, lr, settings):
    """The optimiser ``settings["optimizer"]`` names over the model's parameters: ``sgd``,
    SGD with momentum (and Nesterov), the paper's, weight decay added to the gradient; or
    ``adamw``, Adam with ``betas`` and ``eps`` and decoupled weight decay, which the
    transformers on recall train with. Every parameter's update is elementwise in both,
    so a packed model's members are updated as they would be alone."""
    if settings["optimizer"] == "adamw":
        return torch.optim.AdamW(
            model.parameters(),
            lr=lr,
            betas=tuple(settings["betas"]),
            eps=settings["eps"],
            weight_decay=settings["weight_decay"],
            foreach=True,
        )
    if settings["optimizer"] != "sgd":
        raise ValueError(f"training.optimizer: unknown {settings['optimizer']!r} (sgd, adamw)")
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


def train(trainee, data, settings, checkpoint_path=None):
    """Train ``trainee`` (a ``Run``, or a pack's runs as one, packed.PackedRuns) to the
    end of its schedule; its runs' records (``history``, ``diverged_at``, ``model``,
    ``wall_time_s``) hold the result.

    A trainee's runs share epochs, batch size and learning rate. A run whose loss turns
    non-finite is recorded as diverged at the end of that epoch, and its model keeps that
    epoch's weights; training stops when every run has diverged. ``settings`` is the
    config's ``training`` section; ``data`` a ``Prepared`` data set on the trainee's
    device. With ``checkpoint_path``, the trainee resumes from the checkpoint there if
    any, saves one every ``settings["checkpoint_every"]`` epochs, and on a stop request
    (``checkpoint.stop_requested``) saves one and raises ``checkpoint.Interrupted``.
    """
    runs, device = trainee.runs, trainee.device
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: autotune each conv once
    epochs, batch_size, lr = (runs[0].cell[key] for key in ("epochs", "batch_size", "lr"))
    steps_per_epoch = math.ceil(len(data.y_train) / batch_size)
    total_steps = steps_per_epoch * epochs
    warmup_steps = round(settings["warmup_epochs"] * steps_per_epoch)

    identity = {
        "cells": [run.cell for run in runs],
        "settings": result_settings(settings),  # a checkpoint outlives a change of the rest
        "arch_options": runs[0].arch_options,
    }
    generators = [g for run in runs for g in run.generators]
    checkpointer = checkpoint.Checkpointer(
        checkpoint_path, identity, trainee.model, trainee.optimizer, generators
    )
    resumed = checkpointer.restore()  # None: a fresh start
    first_epoch, step, batches_done, seconds = 1, 0, 0, 0.0
    if resumed:
        first_epoch, step, batches_done, seconds = (
            resumed[k] for k in ("epoch", "step", "batches_done", "seconds")
        )
        for run, progress in zip(runs, resumed["runs"], strict=True):
            run.resume(progress)
    start = time.perf_counter() - seconds

    def progress(epoch, batches_done):
        """Where training stands, as a checkpoint saves it."""
        return dict(
            epoch=epoch,
            step=step,
            batches_done=batches_done,
            seconds=time.perf_counter() - start,
            runs=[run.progress() for run in runs],
        )

    for run in runs:
        if run.gc and not run.history:  # epoch 0: the initialisation (a resumed run has it)
            init = {"epoch": 0, "step": 0, **run.gc.measure(run.model, 0)}
            run.history.append({**init, "wall_time_s": time.perf_counter() - start})
    for epoch in range(first_epoch, epochs + 1):
        active = [run for run in runs if run.diverged_at is None]
        if not active:
            break
        if not batches_done:  # else resuming mid-epoch
            for run in active:
                run.start_epoch()
        for i in range(batches_done, steps_per_epoch):
            trainee.step(data, i, lr_at(step, total_steps, warmup_steps, lr))
            step += 1
            if checkpoint.stop_requested():
                checkpointer.stop(progress(epoch, i + 1))
        batches_done = 0

        trainee.sync()
        last_lr = lr_at(step - 1, total_steps, warmup_steps, lr)
        for run in active:
            seconds = time.perf_counter() - start
            end_epoch(run, data, settings, epoch, step, last_lr, steps_per_epoch, seconds)
        every = settings.get("checkpoint_every", 0)
        still_training = any(run.diverged_at is None for run in runs)
        if every and epoch % every == 0 and epoch < epochs and still_training:
            checkpointer.save(progress(epoch + 1, 0))

    for run in runs:
        run.wall_time_s = time.perf_counter() - start
    return trainee


def end_epoch(run, data, settings, epoch, step, lr, steps_per_epoch, seconds):
    """Check the run's epoch for a non-finite loss (one host sync), then evaluate it and
    append its history row (``lr``: the epoch's last); or record it as diverged."""
    finite = torch.isfinite(run.losses)
    if not finite.all():
        first_bad = int((~finite).nonzero()[0])
        run.diverged_at = (epoch, (epoch - 1) * steps_per_epoch + first_bad + 1)
        log.info(
            "%s: epoch %d: non-finite loss at step %d, run diverged",
            *(run_name(run.cell), *run.diverged_at),
        )
        return
    test_loss, test_acc = evaluate(
        run.model, data, data.x_test, data.y_test, settings["eval_batch_size"], settings
    )
    row = {
        "epoch": epoch,
        "step": step,
        "lr": lr,
        "train_loss": run.losses.mean().item(),
        "train_acc": run.correct.item() / len(data.y_train),
        "test_loss": test_loss,
        "test_acc": test_acc,
        "wall_time_s": seconds,
    }
    if run.gc and run.gc.due(epoch):
        row.update(run.gc.measure(run.model, epoch))
    run.history.append(row)
    log.info(
        "%s: epoch %d/%d  step %d  lr %.4f  train_loss %.4f  train_acc %.4f  "
        "test_loss %.4f  test_acc %.4f  %.1fs",
        run_name(run.cell),
        epoch,
        run.cell["epochs"],
        *(row[k] for k in ("step", "lr", "train_loss", "train_acc")),
        *(row[k] for k in ("test_loss", "test_acc", "wall_time_s")),
    )


def run_name(cell):
    """A short name of a run in the log: its scaling and seed."""
    return f"{cell['scaling']} s{cell['seed']}"
