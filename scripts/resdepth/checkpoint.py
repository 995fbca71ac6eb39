"""Checkpoints that let an interrupted training run finish as if it had never stopped.

SLURM ends a job with SIGTERM (preemption, ``scancel``, time limit; the SLURM profile asks
for it two minutes before the limit), and some sites warn with SIGUSR1 first. Inside
``with signals_request_stop():`` (the train rule's entry point) both signals only record a
request; the training loop checks ``stop_requested()`` after every step, saves everything
the rest of the run depends on (weights, optimizer buffers, every random generator, its
place in the epoch, the history so far) and raises ``Interrupted``, so the job fails and
its outputs stay incomplete. The next attempt restores the checkpoint and continues: on
the CPU its results equal those of an uninterrupted run bit for bit.

Checkpoints live outside the rule's declared outputs (Snakemake deletes a failed job's
outputs), are written atomically and are read with ``weights_only=True``.
"""

import contextlib
import hashlib
import json
import logging
import os
import signal
import sys
from pathlib import Path

import torch

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
_received = []  # names of the stop signals received inside signals_request_stop()


@contextlib.contextmanager
def signals_request_stop():
    """Within: SIGTERM and SIGUSR1 request a checkpoint-and-stop instead of killing us.

    Signal handlers belong to the whole process, hence a module-level record. Outside this
    block the signals keep their usual effect.
    """

    def record(signum, frame):
        _received.append(signal.Signals(signum).name)

    _received.clear()
    previous = {sig: signal.signal(sig, record) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _received.clear()  # a request is for the block it arrived in


def stop_requested():
    """The name of the first stop signal received, or None."""
    return _received[0] if _received else None


class Interrupted(RuntimeError):
    """Training stopped on a signal; its state is in the checkpoint (if it has a path)."""


def save_atomic(state, path):
    """``torch.save`` to ``path`` so that a kill mid-write leaves the previous file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())  # on disk before the rename makes it the checkpoint
    os.replace(tmp, path)


def code_digest():
    """sha256 of the source of every loaded ``resdepth`` module: the code computing the run."""
    digest = hashlib.sha256()
    for name in sorted(m for m in sys.modules if m.split(".")[0] == "resdepth"):
        if getattr(sys.modules[name], "__file__", None):
            digest.update(Path(sys.modules[name].__file__).read_bytes())
    return digest.hexdigest()


def discard(path):
    """Delete a finished run's checkpoint (it would otherwise be resumed by a rerun)."""
    Path(path).unlink(missing_ok=True)


class Checkpointer:
    """Saves and restores a run's model, optimizer, random generators and progress.

    ``identity`` (JSON-like: the run's cell and settings) is stored with the state, with
    the ``code_digest``; a checkpoint saved for another identity or by other code is
    ignored (resuming it would mix two computations). With ``path=None`` nothing is saved
    or restored, and ``stop`` just raises.
    """

    def __init__(self, path, identity, model, optimizer, generators):
        self.path = Path(path) if path is not None else None
        # Plain types, as they load back.
        self.identity = json.loads(json.dumps({**identity, "code": code_digest()}))
        self.model, self.optimizer, self.generators = model, optimizer, list(generators)

    def save(
        self, epoch, step, history, seconds, batches_done=0, reason="schedule", **epoch_tensors
    ):
        """Save the state before batch ``batches_done`` of ``epoch`` (global ``step``,
        ``seconds`` of training so far); mid-epoch, with the tensors the epoch needs.
        ``reason`` (the schedule, or a signal's name) is reported when resuming."""
        if self.path is None:
            return
        progress = dict(epoch=epoch, step=step, history=history, seconds=seconds)
        progress.update(batches_done=batches_done, **epoch_tensors)
        save_atomic(
            {
                "identity": self.identity,
                "reason": reason,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "generators": [g.get_state() for g in self.generators],
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "progress": progress,
            },
            self.path,
        )
        log.info("checkpoint saved to %s", self.path)

    def stop(self, *progress, **epoch_progress):
        """``save``, then raise ``Interrupted`` naming the signal that asked for it."""
        self.save(*progress, reason=stop_requested(), **epoch_progress)
        saved = f"state saved to {self.path}" if self.path else "no checkpoint path, not saved"
        raise Interrupted(f"stopped by {stop_requested()}; {saved}")

    def restore(self, device):
        """Load the checkpoint into the model, optimizer and generators; return where the
        run stands (as ``save`` got it, tensors on ``device``): a fresh start without one."""
        fresh = dict(epoch=1, step=0, history=[], seconds=0.0, batches_done=0)
        if self.path is None or not self.path.exists():
            return fresh
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise RuntimeError(
                f"cannot read checkpoint {self.path} ({error}); delete it to train from scratch"
            ) from error
        if state["identity"] != self.identity:
            log.warning("ignoring checkpoint %s: saved with other settings or code", self.path)
            return fresh
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        for generator, generator_state in zip(self.generators, state["generators"], strict=True):
            generator.set_state(generator_state)
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"]:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        progress = {
            k: v.to(device) if isinstance(v, torch.Tensor) else v
            for k, v in state["progress"].items()
        }
        log.info(
            "resumed from %s (saved on %s) at epoch %d, step %d",
            *(self.path, state["reason"], progress["epoch"], progress["step"]),
        )
        return progress
