"""Rule radius_transformer: claim C6 on fresh transformers → results/radius_transformer.csv."""

import torch

from resdepth import data, jobs, truncation

jobs.log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
study = snakemake.params.study
dataset = data.load_prepared(snakemake.input.data)
ids = dataset.inputs(dataset.x_train[: study["batch_size"]])
rows = truncation.radius_rows(
    study, ids, dataset.num_classes, dataset.model_options(snakemake.params.arch_options)
)
jobs.write_csv(rows, snakemake.output[0], truncation.RADIUS_COLUMNS)
