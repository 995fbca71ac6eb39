"""Rule expansion_truncation: claim C1 → results/expansion/truncation{,_slopes}.csv."""

import torch

from resdepth import data, expansion_study, jobs

jobs.log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
settings = snakemake.params.settings
dataset = data.load_prepared(snakemake.input.data)
x = dataset.inputs(dataset.x_train[: settings["batch_size"]])
rows = expansion_study.truncation_rows(
    settings, x, dataset.num_classes, snakemake.params.arch_options
)
slopes = expansion_study.truncation_slopes(rows, settings["fit_max_lambda"])
jobs.write_csv(rows, snakemake.output.rows, expansion_study.TRUNCATION_COLUMNS)
jobs.write_csv(slopes, snakemake.output.slopes, expansion_study.SLOPE_COLUMNS)
