"""resdepth: the science library behind the pipeline (models, data, training, analysis).

Submodules are imported explicitly (``from resdepth import models``) so that each
Snakemake rule can declare exactly the modules it depends on as inputs.
"""
