"""Rule expansion_truncation: claim C1 → results/expansion/truncation{,_slopes,_per_input}.csv."""

import torch

from resdepth import data, expansion_study, jobs

jobs.log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
settings = snakemake.params.settings
dataset = data.load_prepared(snakemake.input.data)
x = dataset.inputs(dataset.x_train[: settings["batch_size"]])
tables = expansion_study.truncation_tables(
    settings, x, dataset.num_classes, snakemake.params.arch_options
)
slopes = expansion_study.truncation_slopes(tables["truncation"], settings["fit_max_lambda"])
jobs.write_csv(tables["truncation"], snakemake.output.rows, expansion_study.TRUNCATION_COLUMNS)
jobs.write_csv(slopes, snakemake.output.slopes, expansion_study.SLOPE_COLUMNS)
jobs.write_csv(tables["per_input"], snakemake.output.per_input, expansion_study.PER_INPUT_COLUMNS)
