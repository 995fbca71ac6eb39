"""Rule expansion_tables: every run's tables → results/expansion/{orders,
truncated_accuracy,lesion}.csv."""

from resdepth import aggregate, expansion_study, jobs

jobs.log_to(snakemake.log[0])
for name, columns in expansion_study.RUN_TABLE_COLUMNS.items():
    table = aggregate.gather_tables(getattr(snakemake.input, name), columns)
    table.to_csv(getattr(snakemake.output, name), index=False)
