"""resdepth: the science library behind the pipeline (models, data, training, analysis).

Submodules are imported explicitly (``from resdepth import models``) so that each
Snakemake rule can declare exactly the modules it depends on as inputs. For notebooks,
``resdepth.load_run``, ``resdepth.path_terms`` and ``resdepth.taylor_terms``
(``resdepth.api``) are imported on first use, so that the torch-free modules the
Snakefile plans with stay free of torch.
"""

#: What ``resdepth.<name>`` gives from ``resdepth.api``.
API = ("Run", "load_run", "path_terms", "taylor_terms")


def __getattr__(name):
    if name in API:
        from resdepth import api

        return getattr(api, name)
    raise AttributeError(f"module 'resdepth' has no attribute {name!r}")
