"""Rule `digits`: scikit-learn's bundled digits → results/data/digits.{pt,json}."""

from resdepth import data, jobs

jobs.log_to(snakemake.log[0])
settings = snakemake.params.settings
tensors = data.digits_tensors(settings["test_fraction"], settings["split_seed"])
data.write_prepared(
    tensors,
    snakemake.output.tensors,
    snakemake.output.manifest,
    name="digits",
    num_classes=10,
    split_seed=settings["split_seed"],
    test_fraction=settings["test_fraction"],
    standardised="per pixel, with train-split mean and std",
)
