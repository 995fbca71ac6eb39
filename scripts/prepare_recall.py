"""Rule `recall`: synthetic associative recall from a seed → results/data/recall.{pt,json}."""

from resdepth import data, jobs

jobs.log_to(snakemake.log[0])
settings = snakemake.params.settings
sizes = {key: settings[key] for key in ("pairs", "keys", "values", "n_train", "n_test")}
tensors = data.recall_tensors(**sizes, split_seed=settings["split_seed"])
data.write_prepared(
    tensors,
    snakemake.output.tensors,
    snakemake.output.manifest,
    name="recall",
    num_classes=settings["values"],
    vocab_size=settings["keys"] + settings["values"],
    sequence_length=data.recall_sequence_length(settings["pairs"]),
    split_seed=settings["split_seed"],
    pairs=settings["pairs"],
    keys=settings["keys"],
    values=settings["values"],
    tokens="keys 0..keys-1, values keys..keys+values-1; label = the query's value - keys",
)
