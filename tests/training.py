"""Training as the tests call it: one run alone, or a pack's runs as its job trains them,
each returned as (metrics, history, model)."""

from resdepth import grid, train, train_job


def result(run):
    """(metrics, history, model) of a trained run, its metrics as the job measures them."""
    return train_job.outcome(run), run.history, run.model


def train_run(cell, data, settings, arch_options=None, device=None, checkpoint_path=None):
    """The run of ``cell`` trained alone."""
    trainee = train.Run(cell, data, settings, arch_options, device)
    (run,) = train.train(trainee, data, settings, checkpoint_path).runs
    return result(run)


def train_pack(cells, data, settings, arch_options=None, device=None, checkpoints=None):
    """The runs of ``cells`` trained as a pack's job trains them (train_job.trainees: one
    after another, or as one model with ``pack_backend: packed``), each trainee with its
    checkpoint in the folder ``checkpoints`` (None: none)."""
    runs = {grid.run_id(cell): cell for cell in cells}
    assert len(runs) == len(cells), "a pack's runs are distinct"
    params = {"arch_options": arch_options or {}}
    results = []
    for name, trainee in train_job.trainees("pack", runs, data, settings, params, device):
        path = None if checkpoints is None else checkpoints / f"{name}.pt"
        results += [result(run) for run in train.train(trainee, data, settings, path).runs]
    return results
