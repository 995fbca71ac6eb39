"""Train one grid cell: one obvious loop, whole data set on the device, no DataLoader.

SGD with (Nesterov) momentum, linear warm-up then cosine decay to zero, updated every
step; the gradient norm clipped where the cell says so (``grad_clip``, the λ sweep).
Deterministic given the cell's seed (weights, batch order and augmentation all derive
from it). A non-finite loss is a result, not a crash: the run stops and is
recorded as diverged.

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


def forward_backward(model, inputs, y, settings):
    """Loss of one batch, with its gradients added to the parameters' ``.grad``; returns
    the detached (loss, logits)."""
    with precision(inputs.device, settings):
        logits = model(inputs)
    loss = F.cross_entropy(logits.float(), y)
    loss.backward()
    return loss.detach(), logits.detach()


class TrainStep:
    """Gradients of one batch, computed eagerly or, with ``cuda_graph``, by a CUDA graph.

    Why a graph: at width 64 a residual module is a handful of small kernels, and a deep
    tower spends its step launching them one by one from Python. With ``cuda_graph`` (on
    a CUDA device; elsewhere it does nothing) the first batch of ``batch_size`` is
    captured once and every later one is a single replay. The optimiser step stays eager:
    its learning rate changes every step. A replay overwrites the gradient tensors that
    the graph owns, so they are never set to None; a batch of another size (an epoch's
    last) runs eagerly into those same tensors, zeroed first.
    """

    WARMUP_PASSES = 3  # eager passes before capture: cuDNN autotuning, lazy allocations

    def __init__(self, model, settings, batch_size, device):
        self.model, self.settings, self.batch_size = model, settings, batch_size
        self.use_graph = settings.get("cuda_graph", False) and device.type == "cuda"
        self.graph = None

    def __call__(self, inputs, y):
        """(loss, logits) of the batch, its gradients in the parameters' ``.grad``."""
        if self.use_graph and self.graph is None and len(y) == self.batch_size:
            self.capture(inputs, y)
        if self.graph is not None and len(y) == self.batch_size:
            self.inputs.copy_(inputs)
            self.y.copy_(y)
            self.graph.replay()
            return self.loss, self.logits
        self.model.zero_grad(set_to_none=self.graph is None)  # keep the graph's tensors
        return forward_backward(self.model, inputs, y, self.settings)

    def capture(self, inputs, y):
        self.inputs, self.y = inputs.clone(), y.clone()
        buffers = [b.clone() for b in self.model.buffers()]  # BN statistics, counters
        side = torch.cuda.Stream()  # warm-up off the default stream, as capture requires
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.WARMUP_PASSES):
                self.model.zero_grad(set_to_none=True)
                forward_backward(self.model, self.inputs, self.y, self.settings)
        torch.cuda.current_stream().wait_stream(side)
        with torch.no_grad():  # the warm-up passes must leave no trace in the run
            for buffer, saved in zip(self.model.buffers(), buffers, strict=True):
                buffer.copy_(saved)
        self.model.zero_grad(set_to_none=True)  # capture allocates the graph's gradients
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.loss, self.logits = forward_backward(
                self.model, self.inputs, self.y, self.settings
            )


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


def train_run(cell, data, settings, arch_options=None, device=None, checkpoint_path=None):
    """Train the model of ``cell`` on ``data``; return (metrics, history, model).

    ``settings`` is the config's ``training`` section; ``data`` a ``Prepared`` data set
    already on ``device``. With ``checkpoint_path``, the run resumes from the checkpoint
    there if any, saves one every ``settings["checkpoint_every"]`` epochs, and on a stop
    request (``checkpoint.stop_requested``) saves one and raises ``checkpoint.Interrupted``.
    """
    device = device or data.y_train.device
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: autotune each conv once
    torch.manual_seed(cell["seed"])
    model = build_model(
        cell["arch"],
        data.input_shape,
        data.num_classes,
        cell["width"],
        cell["depth"],
        cell["scaling"],
        **(arch_options or {}),
    ).to(device)
    apply_speed_options(model, settings)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=cell["lr"],
        momentum=settings["momentum"],
        nesterov=settings["nesterov"],
        weight_decay=settings["weight_decay"],
        foreach=True,  # one fused update per step instead of one per tensor
    )
    batch_order = torch.Generator(device=device).manual_seed(cell["seed"])

    n_train, batch_size = len(data.y_train), cell["batch_size"]
    train_step = TrainStep(model, settings, batch_size, device)
    steps_per_epoch = math.ceil(n_train / batch_size)
    total_steps = steps_per_epoch * cell["epochs"]
    warmup_steps = round(settings["warmup_epochs"] * steps_per_epoch)

    gc = GCTracker.from_settings(settings.get("gc"), data, cell)  # None: no GC work at all
    identity = {
        "cell": cell,
        "settings": result_settings(settings),  # a checkpoint outlives a change of the rest
        "arch_options": arch_options or {},
    }
    generators = [batch_order, gc.generator] if gc else [batch_order]
    checkpointer = checkpoint.Checkpointer(checkpoint_path, identity, model, optimizer, generators)
    resumed = checkpointer.restore(device)  # a fresh start when there is no checkpoint
    history, diverged_at = resumed["history"], None
    step, start = resumed["step"], time.perf_counter() - resumed["seconds"]
    if gc and not history:  # epoch 0: the initialisation (a resumed run has it already)
        init = {"epoch": 0, "step": 0, **gc.measure(model, 0)}
        history.append({**init, "wall_time_s": time.perf_counter() - start})
    for epoch in range(resumed["epoch"], cell["epochs"] + 1):
        model.train()
        first_batch = resumed["batches_done"] if epoch == resumed["epoch"] else 0
        if first_batch:  # resuming mid-epoch
            perm, losses, correct = resumed["perm"], resumed["losses"], resumed["correct"]
        else:
            perm = torch.randperm(n_train, device=device, generator=batch_order)
            losses = torch.zeros(steps_per_epoch, device=device)
            correct = torch.zeros((), device=device)
        for i in range(first_batch, steps_per_epoch):
            idx = perm[i * batch_size : (i + 1) * batch_size]
            x, y = data.x_train[idx], data.y_train[idx]
            if data.augment:
                x = random_crop_flip(x, batch_order)  # one seeded stream for the data
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, total_steps, warmup_steps, cell["lr"])
            loss, logits = train_step(data.inputs(x), y)
            clip_gradients(model, cell.get("grad_clip"))
            optimizer.step()
            losses[i] = loss
            correct += (logits.argmax(1) == y).sum()
            step += 1
            if checkpoint.stop_requested():
                in_epoch = dict(batches_done=i + 1, perm=perm, losses=losses, correct=correct)
                checkpointer.stop(epoch, step, history, time.perf_counter() - start, **in_epoch)

        # One host sync per epoch: find the first non-finite step, if any.
        finite = torch.isfinite(losses)
        if not finite.all():
            first_bad = int((~finite).nonzero()[0])
            diverged_at = (epoch, (epoch - 1) * steps_per_epoch + first_bad + 1)
            log.info("epoch %d: non-finite loss at step %d, run diverged", *diverged_at)
            break

        test_loss, test_acc = evaluate(
            model, data, data.x_test, data.y_test, settings["eval_batch_size"], settings
        )
        row = {
            "epoch": epoch,
            "step": step,
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": losses.mean().item(),
            "train_acc": correct.item() / n_train,
            "test_loss": test_loss,
            "test_acc": test_acc,
            "wall_time_s": time.perf_counter() - start,
        }
        if gc and gc.due(epoch):
            row.update(gc.measure(model, epoch))
        history.append(row)
        log.info(
            "epoch %d/%d  step %d  lr %.4f  train_loss %.4f  train_acc %.4f  "
            "test_loss %.4f  test_acc %.4f  %.1fs",
            epoch,
            cell["epochs"],
            *(row[k] for k in ("step", "lr", "train_loss", "train_acc")),
            *(row[k] for k in ("test_loss", "test_acc", "wall_time_s")),
        )
        every = settings.get("checkpoint_every", 0)
        if every and epoch % every == 0 and epoch < cell["epochs"]:
            checkpointer.save(epoch + 1, step, history, row["wall_time_s"])

    final = history[-1] if history and diverged_at is None else {}
    metrics = {
        **cell,
        "lambda": branch_scale(cell["scaling"], cell["depth"]),
        "status": "diverged" if diverged_at else "ok",
        "diverged_epoch": diverged_at[0] if diverged_at else None,
        "diverged_step": diverged_at[1] if diverged_at else None,
        **{k: final.get(k) for k in ("train_loss", "train_acc", "test_loss", "test_acc")},
        "wall_time_s": time.perf_counter() - start,
        "n_params": sum(p.numel() for p in model.parameters()),
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
    }
    return metrics, history, model
