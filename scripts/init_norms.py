"""Rule `init_norms`: output norms of untrained towers (claim C2) → results/init_norms.csv."""

import torch

from resdepth import data, explosion, jobs

jobs.log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
sweep = snakemake.params.sweep
dataset = data.load_prepared(snakemake.input.data)
x = dataset.inputs(dataset.x_train[: sweep["batch_size"]])
rows = explosion.init_norm_rows(sweep, x, dataset.num_classes, snakemake.params.arch_options)
jobs.write_csv(rows, snakemake.output[0], explosion.COLUMNS)
