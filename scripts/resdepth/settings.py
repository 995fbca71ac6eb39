"""Which settings define a result, and which only say how to compute it.

Torch-free: the Snakefile picks a job's params with it while planning. Only the
result-defining settings are params, so changing an execution setting reruns nothing,
and a training checkpoint saved under other execution settings still resumes.

Execution-only, per section (dotted keys are nested):
- ``training``: ``checkpoint_every``, ``gpu``, ``site_resources`` (when to save, what
  to ask the scheduler for); ``cuda_graph`` (replays the very kernels of the eager
  step); ``packing`` (which runs share a job: each member trains exactly as it would
  alone); ``device`` and ``threads`` (where the same computation runs);
  ``eval_batch_size`` and ``gc.chunk_size`` (how many inputs one evaluation or
  complexity batch holds: every input is computed alone, only sums are grouped
  differently).
- ``expansion``: ``device``, ``threads``, ``eval_batch_size``, for the same reasons.

A device, thread count or batch grouping changes results by floating-point round-off at
most (sums in another order), never what is computed. The speed options ``bf16``,
``channels_last`` and ``compile`` stay result-defining: they change the arithmetic or
the kernels themselves.
"""

#: Tracked files that only say how to run (the scheduler, cores, retries: the profiles):
#: editing one changes no result, so provenance does not count it as a code change.
EXECUTION_FILES = ("workflow/profiles",)

EXECUTION_SETTINGS = {
    "training": (
        "checkpoint_every",
        "gpu",
        "site_resources",
        "cuda_graph",
        "device",
        "threads",
        "eval_batch_size",
        "gc.chunk_size",
        "packing",
    ),
    "expansion": ("device", "threads", "eval_batch_size"),
}


def result_settings(values, section="training"):
    """The settings of config ``section`` (its ``values``) that define a result."""
    return _without(values, EXECUTION_SETTINGS[section])


def _without(values, dotted_keys):
    """``values`` less the (possibly nested, dotted) keys listed."""
    result = {}
    for key, value in values.items():
        nested = [k.split(".", 1)[1] for k in dotted_keys if k.startswith(f"{key}.")]
        if key in dotted_keys:
            continue
        result[key] = _without(value, nested) if nested and isinstance(value, dict) else value
    return result
