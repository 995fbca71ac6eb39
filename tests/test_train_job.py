"""The training job's protocol (train_job.train_pack): finished runs recovered, the rest
trained one after another, each run's files written (metrics.json last) and kept the
moment it ends, checkpoints discarded; a crash never leaves a run that counts as done."""

import json

import numpy as np
import pytest
import torch
from conftest import TRAIN_SETTINGS
from test_checkpoint import flip_bytes_in_the_middle, stop_at_step
from training import train_run

from resdepth import checkpoint, data, grid, jobs, train, train_job

pytestmark = pytest.mark.usefixtures("one_thread")  # bit-for-bit comparisons

SETTINGS = {**TRAIN_SETTINGS, "checkpoint_every": 1}
STEPS_PER_EPOCH = 11  # ceil(1347 digits in the train split / 128)
CELLS = [
    dict(dataset="digits", arch="mlp", depth=2, scaling=scaling, seed=seed)
    | dict(width=16, lr=0.05, epochs=2, batch_size=128)
    for scaling, seed in (("inv", 0), ("one", 1), (0.5, 0))
]
RUNS = {grid.run_id(cell): cell for cell in CELLS}
PARAMS = {"training": {"momentum": 0.9}, "arch_options": {}, "augment": False}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The digits data set as the data rule writes it."""
    folder = tmp_path_factory.mktemp("data")
    tensors = data.digits_tensors(0.25, split_seed=0)
    data.write_prepared(tensors, folder / "digits.pt", folder / "digits.json", "digits", 10)
    return folder / "digits.pt"


def files_of(root):
    return {
        run_id: train_job.RunFiles(
            *(
                root / "runs" / run_id / name
                for name in ("model.pt", "history.csv", "test_correct.npy", "metrics.json")
            )
        )
        for run_id in RUNS
    }


def run_job(root, prepared, settings=SETTINGS):
    files = files_of(root)
    device = torch.device("cpu")
    checkpoints = root / "checkpoints"
    train_job.train_pack("pack", files, RUNS, prepared, settings, PARAMS, device, checkpoints)
    return files


def contents(files):
    return {run_id: [path.read_bytes() for path in paths] for run_id, paths in files.items()}


def delete(files):
    """What Snakemake does to a failed job's outputs."""
    for paths in files.values():
        for path in paths:
            path.unlink(missing_ok=True)


@pytest.fixture
def trained(monkeypatch):
    """The run ids of the runs that train.train trains, in order."""
    ids, real_train = [], train.train

    def recording(trainee, *args):
        ids.extend(grid.run_id(run.cell) for run in trainee.runs)
        return real_train(trainee, *args)

    monkeypatch.setattr(train, "train", recording)
    return ids


def test_job_writes_each_run_as_alone_then_recovers_it_without_training(
    tmp_path, prepared, digits, trained
):
    files = run_job(tmp_path, prepared)
    assert trained == list(RUNS)
    for run_id, cell in RUNS.items():
        metrics = json.loads(files[run_id].metrics.read_text())
        expected, _, model = train_run(cell, digits, SETTINGS)
        assert {**metrics, "wall_time_s": None} | {"provenance": None} == {
            "run_id": run_id,
            **expected,
            "wall_time_s": None,
            "model_sha256": data.sha256(files[run_id].model),
            "pack_id": "pack",
            "pack_members": list(RUNS),
            "pack_backend": "loop",
            "provenance": None,
        }
        weights = torch.load(files[run_id].model, weights_only=True)
        assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert not list((tmp_path / "checkpoints").glob("*.pt"))  # discarded
    before = contents(files)

    trained.clear()
    delete(files)
    run_job(tmp_path, prepared)
    assert trained == [] and contents(files) == before


def test_each_run_is_written_metrics_last_and_kept_before_the_next_trains(
    tmp_path, prepared, monkeypatch
):
    events = []
    for name in ("save_weights", "write_csv", "save_array", "write_json"):
        real = getattr(jobs, name)

        def recording(obj, path, *args, real=real):
            events.append(("write", path.parent.name, path.name))
            return real(obj, path, *args)

        monkeypatch.setattr(jobs, name, recording)
    real_keep = train_job.keep

    def keep(outputs, identity, kept):
        events.append(("keep", kept.name))
        return real_keep(outputs, identity, kept)

    monkeypatch.setattr(train_job, "keep", keep)
    real_train = train.train
    monkeypatch.setattr(
        train, "train", lambda trainee, *a: events.append(("train",)) or real_train(trainee, *a)
    )
    run_job(tmp_path, prepared)
    expected = []
    for run_id in RUNS:
        expected += [("train",)]
        names = ("model.pt", "history.csv", "test_correct.npy")
        expected += [("write", run_id, name) for name in names]
        expected += [("write", run_id, "metrics.json"), ("keep", f"{run_id}.finished")]
    assert events == expected


def test_a_pack_interrupted_after_its_first_run_keeps_that_run(
    tmp_path, prepared, digits, monkeypatch, trained
):
    first, second, third = RUNS
    stop_at_step(monkeypatch, 2 * STEPS_PER_EPOCH + 4, "signal")  # mid-way into run 2
    with pytest.raises(checkpoint.Interrupted):
        run_job(tmp_path, prepared)
    monkeypatch.setattr(checkpoint, "stop_requested", lambda: None)
    files = files_of(tmp_path)
    checkpoints = tmp_path / "checkpoints"
    assert all(path.exists() for path in files[first])
    assert (checkpoints / f"{first}.finished" / "record.json").exists()
    assert not (checkpoints / f"{first}.pt").exists()  # discarded: the run is done
    assert (checkpoints / f"{second}.pt").exists()
    assert not any(path.exists() for path in (*files[second], *files[third]))
    kept = files[first].metrics.read_bytes()

    delete(files)
    trained.clear()
    run_job(tmp_path, prepared)
    assert trained == [second, third]  # the first recovered, not trained again
    assert files[first].metrics.read_bytes() == kept
    _, _, model = train_run(RUNS[second], digits, SETTINGS)  # resumed: as uninterrupted
    weights = torch.load(files[second].model, weights_only=True)
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("crash_in", ["write_csv", "save_array", "write_json", "keep"])
def test_a_crash_between_writes_leaves_no_run_that_counts_as_done(
    tmp_path, prepared, monkeypatch, trained, crash_in
):
    """Whatever files of the first run were written when the job died, the rerun trains
    it again: only a complete record of all its files counts as done."""

    class Crash(Exception):
        pass

    def crash(*args):
        raise Crash

    owner = train_job if crash_in == "keep" else jobs
    real = getattr(owner, crash_in)
    monkeypatch.setattr(owner, crash_in, crash)
    with pytest.raises(Crash):
        run_job(tmp_path, prepared)
    monkeypatch.setattr(owner, crash_in, real)
    first = next(iter(RUNS))
    assert not (tmp_path / "checkpoints" / f"{first}.finished" / "record.json").exists()

    trained.clear()
    files = run_job(tmp_path, prepared)  # outputs left in place: a rerun by hand
    assert trained == list(RUNS)
    assert all(path.exists() for paths in files.values() for path in paths)


def test_a_kept_run_of_other_params_is_trained_again(tmp_path, prepared, trained):
    run_job(tmp_path, prepared)
    trained.clear()
    train_job.train_pack(
        "pack",
        files_of(tmp_path),
        RUNS,
        prepared,
        SETTINGS,
        {**PARAMS, "training": {"momentum": 0.5}},
        torch.device("cpu"),
        tmp_path / "checkpoints",
    )
    assert trained == list(RUNS)


def finished_outputs(tmp_path):
    """Three output files of a job, as the train job writes them."""
    outputs = [tmp_path / "runs" / name for name in ("model.pt", "history.csv", "metrics.json")]
    outputs[0].parent.mkdir()
    for i, path in enumerate(outputs):
        path.write_bytes(bytes(range(i, 256)))
    return outputs


IDENTITY = {"cell": CELLS[0], "code": "digest"}


def test_finished_run_is_recovered_after_its_outputs_were_deleted(tmp_path):
    outputs = finished_outputs(tmp_path)
    contents = [path.read_bytes() for path in outputs]
    kept = tmp_path / "checkpoints" / "run.finished"
    train_job.keep(outputs, IDENTITY, kept)
    for path in outputs:
        path.unlink()
    assert not train_job.recover(outputs, {**IDENTITY, "code": "other"}, kept)
    assert not any(path.exists() for path in outputs)
    assert train_job.recover(outputs, IDENTITY, kept)
    assert [path.read_bytes() for path in outputs] == contents
    assert not train_job.recover(outputs, IDENTITY, tmp_path / "other.finished")


def test_corrupted_finished_run_is_refused_naming_the_file(tmp_path):
    outputs = finished_outputs(tmp_path)
    kept = tmp_path / "checkpoints" / "run.finished"
    train_job.keep(outputs, IDENTITY, kept)
    outputs[0].unlink()
    flip_bytes_in_the_middle(kept / "model.pt")
    with pytest.raises(checkpoint.Corrupted, match="(?s)model.pt is corrupted.*delete"):
        train_job.recover(outputs, IDENTITY, kept)


def test_each_run_saves_its_test_outcomes_as_its_accuracy_counts_them(tmp_path, prepared):
    """test_correct.npy: one bool per test image, in test-set order; its mean is the
    run's test accuracy (the same predictions), so two runs can be compared image by
    image (fits.paired_test_variance)."""
    files = run_job(tmp_path, prepared)
    n_test = json.loads(prepared.with_suffix(".json").read_text())["n_test"]
    for run_id in RUNS:
        outcomes = np.load(files[run_id].test_correct)
        metrics = json.loads(files[run_id].metrics.read_text())
        assert outcomes.dtype == bool and outcomes.shape == (n_test,)
        assert outcomes.sum() / n_test == metrics["test_acc"]


def test_a_diverged_run_saves_no_test_outcomes(digits):
    cell = dict(dataset="digits", arch="mlp", depth=16, scaling="one", seed=0, width=64)
    cell.update(lr=0.02, epochs=1, batch_size=128)
    run = train.Run(cell, digits, SETTINGS)
    train.train(run, digits, SETTINGS, None)
    assert run.diverged_at is not None
    assert train_job.test_correct(run, digits, SETTINGS).shape == (0,)
