"""Rule `init_norms_transformer`: claim C2 for fresh transformers →
results/init_norms_transformer.csv."""

import torch

from resdepth import data, explosion, jobs

jobs.log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
study = snakemake.params.study
dataset = data.load_prepared(snakemake.input.data)
ids = dataset.inputs(dataset.x_train[: study["batch_size"]])
rows = explosion.transformer_init_norm_rows(
    study, ids, dataset.num_classes, dataset.model_options(snakemake.params.arch_options)
)
jobs.write_csv(rows, snakemake.output[0], explosion.TRANSFORMER_COLUMNS)
