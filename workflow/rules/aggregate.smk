# Aggregation: every run's metrics into one table, and the accuracy table (scaling x depth)
# over seeds. run_files and lib come from common.smk.


# Seconds of work each: on a cluster, run them where Snakemake runs instead of
# submitting them.
localrules:
    aggregate_runs,
    accuracy_table,


rule aggregate_runs:
    """Every run's metrics.json as one row of runs.csv."""
    input:
        metrics=run_files("metrics.json", GRID_RUNS),
        lib=lib("aggregate_runs"),
    output:
        "results/runs.csv",
    log:
        "results/logs/aggregate_runs.log",
    benchmark:
        "results/benchmarks/aggregate_runs.tsv"
    conda:
        "../../envs/resdepth.yaml"
    script:
        "../../scripts/aggregate_runs.py"


rule accuracy_table:
    """Claim C3 (the paper's Table 1): test accuracy over seeds, scaling x depth."""
    input:
        runs="results/runs.csv",
        lib=lib("accuracy_table"),
    output:
        csv="results/tables/accuracy.csv",
        md="results/tables/accuracy.md",
        tex="results/tables/accuracy.tex",
    log:
        "results/logs/accuracy_table.log",
    benchmark:
        "results/benchmarks/accuracy_table.tsv"
    conda:
        "../../envs/resdepth.yaml"
    script:
        "../../scripts/accuracy_table.py"
