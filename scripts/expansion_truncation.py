"""Rule expansion_truncation: claim C1 → results/expansion/truncation{,_slopes,_per_input}.csv."""

import torch

from resdepth import data, jobs, truncation

jobs.log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
settings = snakemake.params.settings
dataset = data.load_prepared(snakemake.input.data)
x = dataset.inputs(dataset.x_train[: settings["batch_size"]])
tables = truncation.truncation_tables(
    settings, x, dataset.num_classes, snakemake.params.arch_options
)
slopes = truncation.truncation_slopes(tables["truncation"], settings["fit_max_lambda"])
jobs.write_csv(tables["truncation"], snakemake.output.rows, truncation.TRUNCATION_COLUMNS)
jobs.write_csv(slopes, snakemake.output.slopes, truncation.SLOPE_COLUMNS)
jobs.write_csv(tables["per_input"], snakemake.output.per_input, truncation.PER_INPUT_COLUMNS)
