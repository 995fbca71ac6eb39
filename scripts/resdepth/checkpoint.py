"""Checkpoints that let interrupted training finish as if it had never stopped.

SLURM ends a job with SIGTERM (preemption, ``scancel``, time limit; the SLURM profile asks
for it two minutes before the limit), and some sites warn with SIGUSR1 first. Inside
``with signals_request_stop():`` (the training job, train_job.py) both signals only record a
request; the training loop checks ``stop_requested()`` after every step, saves everything
the rest of the run depends on (weights, optimizer buffers, every random generator, its
place in the epoch, the history so far) and raises ``Interrupted``, so the job fails and
its outputs stay incomplete. The next attempt restores the checkpoint and continues: on
the CPU its results equal those of an uninterrupted run bit for bit.

Checkpoints live outside the rule's declared outputs (Snakemake deletes a failed job's
outputs), are written atomically, carry the sha256 of their payload (``save_atomic``,
``load_verified``: a flipped byte inside a tensor would otherwise resume silently into a
wrong run) and are read with ``weights_only=True``.
"""

import contextlib
import hashlib
import io
import json
import logging
import os
import signal
from pathlib import Path

import torch

from resdepth import provenance

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


class Corrupted(RuntimeError):
    """A saved file's payload does not match the sha256 stored with it."""


def save_atomic(state, path):
    """``torch.save`` ``state`` to ``path`` with the sha256 of its serialised bytes, so that
    ``load_verified`` notices any change to them, and so that a kill mid-write leaves the
    previous file intact. (The bytes are saved as a uint8 tensor: torch's loader checks
    no checksum of its own.)"""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    sealed = {
        "sha256": hashlib.sha256(payload).hexdigest(),
        "payload": torch.frombuffer(bytearray(payload), dtype=torch.uint8),
    }
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(sealed, f)
        f.flush()
        os.fsync(f.fileno())  # on disk before the rename makes it the checkpoint
    os.replace(tmp, path)


def load_verified(path, map_location="cpu"):
    """What ``save_atomic`` saved to ``path``, after checking its sha256; ``Corrupted``
    (naming the file and what to do) when its bytes changed on disk."""
    sealed = torch.load(path, map_location="cpu", weights_only=True)
    payload = sealed["payload"].numpy().tobytes()
    if hashlib.sha256(payload).hexdigest() != sealed["sha256"]:
        raise Corrupted(
            f"{path} is corrupted (its payload does not match the sha256 saved with it); "
            "delete it to train this run from scratch"
        )
    return torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)


def discard(path):
    """Delete a finished trainee's checkpoint (it would otherwise be resumed by a rerun)."""
    Path(path).unlink(missing_ok=True)


class Checkpointer:
    """Saves and restores a trainee's model, optimizer, random generators and progress.

    ``identity`` (JSON-like: the trainee's cells and settings) is stored with the state,
    with the ``provenance.code_digest``; a checkpoint saved for another identity or by
    other code is ignored (resuming it would mix two computations). With ``path=None``
    nothing is saved or restored, and ``stop`` just raises.
    """

    def __init__(self, path, identity, model, optimizer, generators):
        self.path = Path(path) if path is not None else None
        # Plain types, as they load back.
        code = provenance.code_digest()
        self.identity = json.loads(json.dumps({**identity, "code": code}))
        self.model, self.optimizer, self.generators = model, optimizer, list(generators)

    def save(self, progress, reason="schedule"):
        """Save the state with ``progress`` (where training stands: the loop's dict of
        plain values and tensors). ``reason`` (the schedule, or a signal's name) is
        reported when resuming."""
        if self.path is None:
            return
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

    def stop(self, progress):
        """``save``, then raise ``Interrupted`` naming the signal that asked for it."""
        self.save(progress, reason=stop_requested())
        saved = f"state saved to {self.path}" if self.path else "no checkpoint path, not saved"
        raise Interrupted(f"stopped by {stop_requested()}; {saved}")

    def restore(self):
        """Load the checkpoint into the model, optimizer and generators; return the
        ``progress`` it was saved with (tensors on the CPU), or None (a fresh start)."""
        if self.path is None or not self.path.exists():
            return None
        try:
            state = load_verified(self.path)
        except Corrupted:
            raise
        except Exception as error:
            raise RuntimeError(
                f"cannot read checkpoint {self.path} ({error}); delete it to train from scratch"
            ) from error
        if state["identity"] != self.identity:
            log.warning("ignoring checkpoint %s: saved with other settings or code", self.path)
            return None
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        for generator, generator_state in zip(self.generators, state["generators"], strict=True):
            generator.set_state(generator_state)
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"]:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        progress = state["progress"]
        log.info(
            "resumed from %s (saved on %s) at epoch %d, step %d",
            *(self.path, state["reason"], progress["epoch"], progress["step"]),
        )
        return progress
