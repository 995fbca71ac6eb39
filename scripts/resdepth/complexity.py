"""Geometric complexity (GC) of a classifier: the mean over inputs of ||∂ logits / ∂ x||_F².

GC (Dherin et al., NeurIPS 2022) measures how fast the learned function varies with its
input; claim C4 follows it through training and across λ.

Both estimators pull cotangents v over the logits back to the input, Jᵀ v, with
torch.func: one forward pass per chunk of inputs, then one backward pass per cotangent,
``vmap``-ed over the cotangents. In eval mode input i's logits depend on input i alone
(BatchNorm uses its running statistics), so a cotangent on the whole chunk's logits
pulls back to every input's own J_iᵀ v_i: a per-input Jacobian without per-input passes.

- ``exact``: the C one-hot cotangents give the C rows of every J_i, so
  ||J_i||_F² = Σ_c ||J_iᵀ e_c||²: C backward passes per input for C classes.
- ``hutchinson``: ||J_i||_F² = E_v ||J_iᵀ v||² for v ~ N(0, I): P Gaussian probes cost P
  backward passes per input and give a standard error. It pays off when P < C.

Token inputs (integer ids: the transformer on ``recall``) have no derivative; their GC is
that of x0 ↦ logits = head(tower(x0)) at x0 = stem(ids), the token + position
embeddings: how fast the network varies with the vectors it reads.

Memory grows as (cotangents × chunk × input size). Both leave the model exactly as they
found it: modes restored, parameters and ``.grad`` untouched (the forward pass uses
detached copies of the weights).
"""

import logging
import time
from dataclasses import dataclass

import torch
from torch.func import functional_call, vjp, vmap

METHODS = ("exact", "hutchinson")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GCEstimate:
    """A GC value over ``n_inputs`` inputs; ``stderr`` is 0 for the exact method."""

    value: float
    stderr: float
    method: str
    n_inputs: int
    probes: int  # 0 for the exact method


def logit_spread(model, x):
    """``{"logit_var": ...}``: the variance of the logits over the inputs ``x``, averaged
    over classes (eval mode). GC grows as c² when the logits are scaled by c, and so does
    this: GC / logit_var is a scale-free GC, comparable across runs whose logits differ
    in scale (an exploded initialisation, a large λ) rather than in shape."""
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            logits = model(x).double()
    finally:
        for module, training in modes.items():
            module.train(training)
    return {"logit_var": logits.var(dim=0).mean().item()}


def geometric_complexity(
    model, x, method="exact", probes=8, chunk_size=256, generator=None
) -> GCEstimate:
    """GC of ``model`` on the inputs ``x`` (a batch, first dimension = inputs); for token
    ids, with respect to their embeddings ``model.stem(x)``.

    ``probes`` (Hutchinson only, >= 2 so that a standard error exists) Gaussian probes are
    drawn per input from ``generator`` (torch's default generator when None); inputs are
    processed ``chunk_size`` at a time to bound memory.
    """
    if method not in METHODS:
        raise ValueError(f"unknown GC method {method!r}: expected one of {', '.join(METHODS)}")
    if method == "hutchinson" and probes < 2:
        raise ValueError(f"Hutchinson GC needs probes >= 2 for a standard error, got {probes}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if len(x) == 0:
        raise ValueError("geometric_complexity needs at least one input")

    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        tokens = not x.is_floating_point()  # ids: differentiate w.r.t. their embeddings
        logits_of = _detached_forward(model, ("tower", "head") if tokens else None)
        if tokens:
            with torch.no_grad():
                x = model.stem(x)
        per_input = []  # ||J_iᵀ v||² per input (rows) and cotangent v (columns)
        for chunk in torch.split(x, chunk_size):
            cotangents = _one_hot if method == "exact" else _gaussian(probes, generator)
            per_input.append(_pullback_squared_norms(logits_of, chunk, cotangents))
    finally:
        for module, training in modes.items():
            module.train(training)

    if method == "exact":  # ||J_i||_F² = Σ_c ||J_iᵀ e_c||²
        squared_norms = torch.cat(per_input).double().sum(dim=1)
        return GCEstimate(squared_norms.mean().item(), 0.0, method, len(x), 0)
    # samples[i, p] = ||J_iᵀ v_ip||². The inputs are fixed, so only the probes are random:
    # Var(mean) = Σ_i Var_p(samples[i]) / (P · N²), with Var_p estimated per input.
    samples = torch.cat(per_input).double()
    n_inputs = len(samples)
    stderr = (samples.var(dim=1).sum() / probes).sqrt() / n_inputs
    return GCEstimate(samples.mean().item(), stderr.item(), method, n_inputs, probes)


def _detached_forward(model, parts=None):
    """``x -> logits`` through the model with detached weights, so no gradient reaches them;
    with ``parts`` (names of submodules, e.g. tower and head), through those in order."""
    state = {name: t.detach() for name, t in model.named_parameters()}
    state.update({name: t.detach() for name, t in model.named_buffers()})
    if parts is None:
        return lambda x: functional_call(model, state, (x,))

    def forward(x):
        for part in parts:
            prefix = f"{part}."
            own = {k[len(prefix) :]: t for k, t in state.items() if k.startswith(prefix)}
            x = functional_call(getattr(model, part), own, (x,))
        return x

    return forward


def _pullback_squared_norms(logits_of, chunk, cotangents):
    """||J_iᵀ v||² for every input i of the chunk and every cotangent v: (chunk, K).

    ``cotangents(logits)`` returns K cotangents stacked, shape (K, *logits.shape).
    """
    logits, pull_back = vjp(logits_of, chunk)
    (pullbacks,) = vmap(pull_back)(cotangents(logits))  # (K, chunk, *input_shape)
    return pullbacks.pow(2).flatten(start_dim=2).sum(dim=2).T


def _one_hot(logits):
    """The C basis vectors e_c, each on every input's logits: (C, chunk, C)."""
    n_inputs, n_classes = logits.shape
    basis = torch.eye(n_classes, dtype=logits.dtype, device=logits.device)
    return basis[:, None, :].expand(n_classes, n_inputs, n_classes)


def _gaussian(probes, generator):
    """``probes`` independent N(0, I) cotangents per input, drawn from ``generator``."""

    def draw(logits):
        device = generator.device if generator is not None else logits.device
        shape = (probes, *logits.shape)
        v = torch.randn(shape, generator=generator, device=device, dtype=logits.dtype)
        return v.to(logits.device)

    return draw


class GCTracker:
    """GC of a training run on a fixed subset of its training inputs, at a fixed cadence.

    ``settings`` is the config's ``training.gc``: GC is measured on the first ``inputs``
    training images (the same for every run of a data set) at initialisation (epoch 0),
    every ``every`` epochs, and at the last epoch. One measurement costs ``inputs`` × C
    backward passes (exact, C classes) or ``inputs`` × ``probes`` (Hutchinson). The
    probes come from a generator seeded with the run's seed and the global RNG is never
    drawn from, so tracking GC does not change the training run.
    """

    def __init__(self, settings, data, cell):
        self.every, self.last_epoch = settings["every"], cell["epochs"]
        self.method, self.probes = settings["method"], settings["probes"]
        self.chunk_size = settings["chunk_size"]
        self.x = data.inputs(data.x_train[: settings["inputs"]])
        self.generator = torch.Generator(self.x.device).manual_seed(cell["seed"])

    @classmethod
    def from_settings(cls, settings, data, cell):
        """A tracker, or None when ``settings`` is absent or ``every`` is 0 (tracking off)."""
        return cls(settings, data, cell) if settings and settings["every"] else None

    def due(self, epoch):
        return epoch % self.every == 0 or epoch == self.last_epoch

    def measure(self, model, epoch):
        """``{"gc": value, "gc_stderr": standard error}``, ready to merge into a history row."""
        start = time.perf_counter()
        estimate = geometric_complexity(
            model, self.x, self.method, self.probes, self.chunk_size, self.generator
        )
        log.info(
            "epoch %d: GC %.5g ± %.2g (%s, %d inputs, %.2fs)",
            epoch,
            estimate.value,
            estimate.stderr,
            self.method,
            estimate.n_inputs,
            time.perf_counter() - start,
        )
        return {"gc": estimate.value, "gc_stderr": estimate.stderr, **logit_spread(model, self.x)}
