"""Which ``training`` settings define a run's result, and which only say how to execute it.

Torch-free: the Snakefile picks a training job's params with it while planning.
"""

#: Settings that change how a run executes, never what it computes: they are not job
#: params, so changing one reruns nothing, and a checkpoint saved under other values
#: still resumes. (``cuda_graph`` replays the very kernels of the eager step; ``packing`` trains
#: each member of a pack exactly as it would train alone.)
EXECUTION_SETTINGS = ("checkpoint_every", "gpu", "cuda_graph", "packing")


def result_settings(training):
    """The ``training`` settings that define a run's result: its job's params."""
    return {key: value for key, value in training.items() if key not in EXECUTION_SETTINGS}
