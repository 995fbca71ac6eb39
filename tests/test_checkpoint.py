"""Interrupted training resumes from its checkpoint and ends bit for bit like an
uninterrupted run: in process (stop requested at chosen steps) and as a real training job
that gets SIGTERM."""

import os
import re
import signal
import subprocess
import sys

import psutil
import pytest
import torch
from conftest import TRAIN_SETTINGS, optimizer_hooks, pack_of, tiny_config
from training import train_run
from uninterrupted import assert_matches_uninterrupted_run, wait_for, without_wall_time

from resdepth import checkpoint, data, grid, jobs, provenance

SETTINGS = {**TRAIN_SETTINGS, "checkpoint_every": 1}
CELL = dict(dataset="digits", arch="mlp", depth=3, scaling="inv_sqrt", seed=0)
CELL.update(width=32, lr=0.05, epochs=3, batch_size=128)
STEPS_PER_EPOCH = 11  # ceil(1347 digits in the train split / 128)


pytestmark = pytest.mark.usefixtures("one_thread")  # every run bit for bit like the others


@pytest.fixture(scope="module")
def uninterrupted(digits, one_thread):
    return train_run(CELL, digits, SETTINGS)


def assert_same_run(a, b):
    """Same metrics, history and weights, bit for bit (wall times aside)."""
    (metrics_a, history_a, model_a), (metrics_b, history_b, model_b) = a, b
    assert without_wall_time(metrics_a, history_a) == without_wall_time(metrics_b, history_b)
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    assert state_a.keys() == state_b.keys()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)


class Killed(Exception):
    """Stands for SIGKILL: the run ends at once, without a checkpoint of its own."""


def stop_at_step(monkeypatch, stop_step, effect):
    """Make the loop's stop check fire after global step ``stop_step``: as a signal
    (checkpoint, then stop) or as a hard kill."""
    steps = iter(range(1, 10**6))

    def stop_requested():
        if next(steps) < stop_step:
            return None
        if effect == "kill":
            raise Killed
        return "SIGTERM"

    monkeypatch.setattr(checkpoint, "stop_requested", stop_requested)


@pytest.mark.parametrize(
    "stop_step, effect",
    [
        (STEPS_PER_EPOCH + 4, "signal"),  # mid-epoch 2: resumes inside the epoch
        (2 * STEPS_PER_EPOCH, "signal"),  # last batch of epoch 2, before its evaluation
        (STEPS_PER_EPOCH + 4, "kill"),  # no signal: resumes from the end of epoch 1
    ],
)
def test_interrupted_run_resumes_to_the_same_result(
    digits, uninterrupted, tmp_path, monkeypatch, stop_step, effect
):
    path = tmp_path / "run.pt"
    stop_at_step(monkeypatch, stop_step, effect)
    with pytest.raises(checkpoint.Interrupted if effect == "signal" else Killed):
        train_run(CELL, digits, SETTINGS, checkpoint_path=path)
    saved = checkpoint.load_verified(path)["progress"]
    expected = (2, stop_step - STEPS_PER_EPOCH) if effect == "signal" else (2, 0)
    assert (saved["epoch"], saved["batches_done"]) == expected

    monkeypatch.undo()
    assert_same_run(train_run(CELL, digits, SETTINGS, checkpoint_path=path), uninterrupted)


def test_resumed_run_draws_the_same_hutchinson_gc_probes(digits, tmp_path, monkeypatch):
    """The GC tracker's probe generator is checkpointed like the data's."""
    gc = {"every": 1, "inputs": 32, "method": "hutchinson", "probes": 2, "chunk_size": 32}
    settings = {**SETTINGS, "gc": gc}
    uninterrupted = train_run(CELL, digits, settings)
    path = tmp_path / "run.pt"
    stop_at_step(monkeypatch, STEPS_PER_EPOCH + 4, "signal")
    with pytest.raises(checkpoint.Interrupted):
        train_run(CELL, digits, settings, checkpoint_path=path)
    monkeypatch.undo()
    resumed = train_run(CELL, digits, settings, checkpoint_path=path)
    assert [row["gc"] for row in resumed[1]] == [row["gc"] for row in uninterrupted[1]]
    assert_same_run(resumed, uninterrupted)


def test_resumed_run_continues_the_global_random_stream(digits, tmp_path, monkeypatch):
    """Training that draws from torch's global generator (here a draw after every step, as
    dropout would) resumes its stream where it stopped, not where the model's init left it."""
    draws = []

    def train_drawing(**kwargs):
        with optimizer_hooks(after=lambda optimizer: draws.append(torch.rand(()).item())):
            return train_run(CELL, digits, SETTINGS, **kwargs)

    train_drawing()
    uninterrupted, draws = draws, []
    path = tmp_path / "run.pt"
    stop_at_step(monkeypatch, STEPS_PER_EPOCH + 4, "signal")
    with pytest.raises(checkpoint.Interrupted):
        train_drawing(checkpoint_path=path)
    monkeypatch.undo()
    train_drawing(checkpoint_path=path)
    assert len(uninterrupted) == 3 * STEPS_PER_EPOCH
    assert draws == uninterrupted


@pytest.mark.parametrize("changed", ["settings", "code"])
def test_checkpoint_of_other_settings_or_code_is_ignored(
    digits, uninterrupted, tmp_path, monkeypatch, caplog, changed
):
    path = tmp_path / "run.pt"
    stop_at_step(monkeypatch, 5, "signal")
    if changed == "code":
        monkeypatch.setattr(provenance, "code_digest", lambda: "digest of older code")
    settings = {**SETTINGS, "weight_decay": 0.0} if changed == "settings" else SETTINGS
    with pytest.raises(checkpoint.Interrupted):
        train_run(CELL, digits, settings, checkpoint_path=path)
    monkeypatch.undo()
    with caplog.at_level("WARNING", logger="resdepth.checkpoint"):
        rerun = train_run(CELL, digits, SETTINGS, checkpoint_path=path)
    assert "ignoring checkpoint" in caplog.text
    assert_same_run(rerun, uninterrupted)


def test_checkpoint_resumes_under_other_execution_settings(
    digits, uninterrupted, tmp_path, monkeypatch, caplog
):
    """Checkpoint cadence, GPU request and CUDA graphs do not change what a run computes."""
    path = tmp_path / "run.pt"
    stop_at_step(monkeypatch, STEPS_PER_EPOCH + 4, "signal")
    with pytest.raises(checkpoint.Interrupted):
        train_run(CELL, digits, SETTINGS, checkpoint_path=path)
    monkeypatch.undo()
    execution = {"checkpoint_every": 5, "gpu": True, "cuda_graph": True}
    with caplog.at_level("INFO", logger="resdepth.checkpoint"):
        resumed = train_run(CELL, digits, {**SETTINGS, **execution}, checkpoint_path=path)
    assert "resumed from" in caplog.text and "ignoring checkpoint" not in caplog.text
    assert_same_run(resumed, uninterrupted)


def test_unreadable_checkpoint_is_named(digits, tmp_path):
    path = tmp_path / "run.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="(?s)run.pt.*delete it"):
        train_run(CELL, digits, SETTINGS, checkpoint_path=path)


def test_failed_write_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "run.pt"
    checkpoint.save_atomic({"epoch": 1}, path)
    with pytest.raises(Exception, match="pickle"):
        checkpoint.save_atomic({"epoch": 2, "unsaveable": lambda: None}, path)
    assert checkpoint.load_verified(path) == {"epoch": 1}


def flip_bytes_in_the_middle(path):
    """Flip 4 bytes in the middle of the file, inside the saved weights: torch does not
    check the zip's CRCs, so the file still loads."""
    raw = bytearray(path.read_bytes())
    at = len(raw) // 2
    raw[at : at + 4] = bytes(b ^ 0xFF for b in raw[at : at + 4])
    path.write_bytes(bytes(raw))


def test_corrupted_checkpoint_is_refused_naming_the_file(digits, tmp_path, monkeypatch):
    """A checkpoint with flipped bytes used to resume silently into a wrong run."""
    path = tmp_path / "run.pt"
    stop_at_step(monkeypatch, STEPS_PER_EPOCH + 4, "signal")
    with pytest.raises(checkpoint.Interrupted):
        train_run(CELL, digits, SETTINGS, checkpoint_path=path)
    monkeypatch.undo()
    flip_bytes_in_the_middle(path)
    with pytest.raises(checkpoint.Corrupted, match="(?s)run.pt is corrupted.*delete it"):
        train_run(CELL, digits, SETTINGS, checkpoint_path=path)


def test_corrupted_model_is_refused_naming_the_file(tmp_path):
    """model.pt is checked against the sha256 its metrics.json records."""
    model = torch.nn.Linear(64, 64)
    path = tmp_path / "run-id" / "model.pt"
    jobs.save_weights(model, path)
    metrics = {"model_sha256": data.sha256(path)}
    assert torch.equal(jobs.load_weights(path, metrics)["weight"], model.weight)
    flip_bytes_in_the_middle(path)
    with pytest.raises(ValueError, match="(?s)run-id/model.pt is corrupted.*delete"):
        jobs.load_weights(path, metrics)


@pytest.mark.parametrize("sig", checkpoint.STOP_SIGNALS)
def test_stop_signals_are_recorded_only_inside_the_block(sig):
    before = signal.getsignal(sig)
    with checkpoint.signals_request_stop():
        assert checkpoint.stop_requested() is None
        os.kill(os.getpid(), sig)
        assert checkpoint.stop_requested() == signal.Signals(sig).name
    assert signal.getsignal(sig) is before
    assert checkpoint.stop_requested() is None


def sigterm_mid_training(workflow, config, run_id):
    """Run the train job of ``run_id``; once it has saved a checkpoint, freeze its trainer
    (SIGSTOP) and read its log. If a whole epoch of steps is still ahead of it, every one
    followed by a stop check, a SIGTERM sent now lands inside the training loop: send it,
    thaw the trainer, return the job's exit code. Otherwise (the trainer is about to
    finish, or has) let it run to the end and return None."""
    epochs = config["grid"]["epochs"][0]
    pack_id = pack_of(config, run_id)
    saved = workflow.path(f"results/checkpoints/{run_id}.pt")  # the run's own checkpoint
    log = workflow.path(f"results/logs/train/{pack_id}.log")
    command = [sys.executable, "-m", "snakemake", "--cores", "1"]
    command += [f"results/runs/{run_id}/metrics.json"]
    command += ["--configfile", str(workflow.write_config(config))]
    job = subprocess.Popen(
        ["timeout", "-k", "10", "300", *command],
        cwd=workflow.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: saved.exists() or job.poll() is not None, "the first checkpoint", 120)
        trainers = [p for p in psutil.Process(job.pid).children(recursive=True) if is_trainer(p)]
        try:
            (trainer,) = trainers
            trainer.suspend()
        except (ValueError, psutil.NoSuchProcess):  # gone already: it finished
            job.wait(timeout=120)
            return None
        try:
            logged = [int(e) for e in re.findall(r"epoch (\d+)/", log.read_text())]
            in_time = max(logged, default=0) <= epochs - 2  # epoch `epochs` not begun
            if in_time:
                trainer.send_signal(signal.SIGTERM)
        finally:
            trainer.resume()
        returncode = job.wait(timeout=120)
        return returncode if in_time else None
    finally:  # on a failed check, do not leave snakemake running
        if job.poll() is None:
            job.terminate()
            job.wait(timeout=60)


def is_trainer(process):
    """Whether ``process`` runs the train rule's script (False once it has exited)."""
    try:
        return "train_run" in process.cmdline()[-1]
    except (psutil.NoSuchProcess, IndexError):
        return False


@pytest.mark.workflow
def test_sigterm_to_a_training_job_then_rerun_equals_an_uninterrupted_run(workflow):
    config = tiny_config()
    config["grid"].update(depth=[4], scaling=["inv_sqrt"])
    config["training"]["checkpoint_every"] = 1
    for epochs in (60, 240, 960):  # longer runs only when training outran the signal
        config["grid"]["epochs"] = [epochs]
        (run_id,) = grid.grid_runs(config)
        returncode = sigterm_mid_training(workflow, config, run_id)
        if returncode is not None:
            break
    else:
        pytest.fail("every training run finished before the test could signal it")
    target = workflow.path(f"results/runs/{run_id}/metrics.json")
    saved = workflow.path(f"results/checkpoints/{run_id}.pt")
    log = workflow.path(f"results/logs/train/{pack_of(config, run_id)}.log")
    assert returncode not in (0, 124, 137)  # failed, not timed out
    assert not target.exists() and saved.exists()
    assert "Interrupted: stopped by SIGTERM" in log.read_text()

    workflow.run(str(target.relative_to(workflow.root)), config=config)
    assert re.search(r"resumed from \S+ \(saved on SIGTERM\) at epoch", log.read_text())
    assert not saved.exists()
    assert_matches_uninterrupted_run(workflow, config, run_id)
