"""Rule expansion_truncation_transformer: claim C1 on fresh transformers →
results/expansion/truncation_transformer{,_slopes}.csv."""

import torch

from resdepth import data, jobs, truncation

jobs.log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
study = snakemake.params.study
dataset = data.load_prepared(snakemake.input.data)
ids = dataset.inputs(dataset.x_train[: study["batch_size"]])
rows = truncation.transformer_truncation_rows(
    study, ids, dataset.num_classes, dataset.model_options(snakemake.params.arch_options)
)
slopes = truncation.transformer_truncation_slopes(rows, study["fit_max_lambda"])
jobs.write_csv(rows, snakemake.output.rows, truncation.TRANSFORMER_TRUNCATION_COLUMNS)
jobs.write_csv(slopes, snakemake.output.slopes, truncation.TRANSFORMER_SLOPE_COLUMNS)
