"""A run's outputs are read only as its training job wrote them (issue 23, defect 1).

Every file a downstream rule reads from a run (metrics.json, history.csv, model.pt) is
checked against the sha256 in the run's finished-run record: a flipped byte, a cut file
or an edited number is an error naming the file and the fix, never a different table.
"""

import json
import os

import pytest
import torch

from resdepth import jobs, train_job

RUN_ID = "digits-mlp-n4-inv-w8-lr0.02-e2-b128-s0"
IDENTITY = {"cell": RUN_ID, "code": "abc"}


def finished_run(results):
    """A finished run's outputs under ``results/runs/RUN_ID`` and the record its job keeps."""
    run = results / "runs" / RUN_ID
    files = {name: run / name for name in ("model.pt", "history.csv", "metrics.json")}
    jobs.save_weights(torch.nn.Linear(4, 3), files["model.pt"])
    rows = [{"epoch": e, "lr": 0.02 / e, "test_acc": 0.5 + e / 10} for e in (1, 2)]
    jobs.write_csv(rows, files["history.csv"], ["epoch", "lr", "test_acc"])
    jobs.write_json({"run_id": RUN_ID, "test_acc": 0.7321, "status": "ok"}, files["metrics.json"])
    train_job.keep(list(files.values()), IDENTITY, results / "checkpoints" / f"{RUN_ID}.finished")
    return files


def flip_byte(data):
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1 :]


def edit_number(data):
    """One digit of a number changed, the file still valid (JSON, CSV, a torch file)."""
    text = data.decode("latin-1")
    index = max(text.rfind(d) for d in "123456789")
    digit = "1" if text[index] != "1" else "2"
    return (text[:index] + digit + text[index + 1 :]).encode("latin-1")


CORRUPTIONS = {
    "flipped byte": flip_byte,
    "truncated": lambda d: d[:-7],
    "edited number": edit_number,
}


def corrupt(path, how, in_place):
    """Change ``path``'s bytes; ``in_place`` keeps its inode (the kept hard link changes
    too), else a new file replaces it (an editor's save)."""
    changed = CORRUPTIONS[how](path.read_bytes())
    if in_place:
        with open(path, "r+b") as file:
            file.write(changed)
            file.truncate()
    else:
        path.unlink()
        path.write_bytes(changed)


@pytest.mark.parametrize("name", ["metrics.json", "history.csv", "model.pt"])
@pytest.mark.parametrize("how", CORRUPTIONS)
@pytest.mark.parametrize("in_place", [False, True], ids=["replaced", "in-place"])
def test_a_changed_run_file_is_refused_by_name_with_its_fix(tmp_path, name, how, in_place):
    files = finished_run(tmp_path / "results")
    jobs.verify_run_files(files.values())  # as written: accepted
    corrupt(files[name], how, in_place)
    with pytest.raises(ValueError) as error:
        jobs.verify_run_files(files.values())
    message = str(error.value)
    assert f"{files[name]} is not the file its training job wrote" in message
    if in_place:  # the kept hard link changed with it: only retraining restores it
        assert "train the run again" in message
    else:
        assert f"delete {files[name]} and rerun the workflow" in message
        kept = tmp_path / "results" / "checkpoints" / f"{RUN_ID}.finished" / name
        assert jobs.file_sha256(kept) != jobs.file_sha256(files[name])


@pytest.mark.parametrize(
    "damage",
    [
        lambda record: record.unlink(),
        lambda record: record.write_bytes(record.read_bytes()[: len(record.read_bytes()) // 2]),
        lambda record: record.write_text(json.dumps({"identity": {}, "sha256": {}})),
    ],
    ids=["missing", "half-written", "without-the-file"],
)
def test_a_run_without_a_readable_record_is_refused_naming_the_record(tmp_path, damage):
    files = finished_run(tmp_path / "results")
    record = jobs.finished_record(files["metrics.json"])
    assert record.exists() and os.path.samefile(
        record.parent / "metrics.json", files["metrics.json"]
    )
    damage(record)
    with pytest.raises(ValueError, match=f"{files['metrics.json']} cannot be verified: {record}"):
        jobs.verify_run_files([files["metrics.json"]])


def test_a_kill_while_the_record_is_written_leaves_no_half_record(tmp_path, monkeypatch):
    """The record is written last and atomically: a job killed while writing it leaves
    no record (the run retrains), never a half-written one that blocked every rerun with
    a bare JSONDecodeError."""
    files = finished_run(tmp_path / "results")
    kept = jobs.finished_record(files["metrics.json"]).parent
    write_text = type(kept).write_text

    def killed_halfway(path, text, *args, **kwargs):
        write_text(path, text[: len(text) // 2], *args, **kwargs)
        raise KeyboardInterrupt  # stands for the kill

    monkeypatch.setattr(type(kept), "write_text", killed_halfway)
    with pytest.raises(KeyboardInterrupt):
        train_job.keep(list(files.values()), IDENTITY, kept)
    monkeypatch.undo()
    assert not (kept / "record.json").exists()
    assert not train_job.recover(list(files.values()), IDENTITY, kept)


def test_a_half_written_record_of_an_older_job_is_retrained_not_an_error(tmp_path):
    files = finished_run(tmp_path / "results")
    record = jobs.finished_record(files["metrics.json"])
    assert train_job.recover(list(files.values()), IDENTITY, record.parent)
    record.write_bytes(record.read_bytes()[:40])
    assert not train_job.recover(list(files.values()), IDENTITY, record.parent)
