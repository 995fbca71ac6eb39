# Aggregation: every run's metrics into one table, and the accuracy table (scaling x depth)
# over seeds. TRAIN_RUNS, run_files and lib come from common.smk.


rule aggregate_runs:
    input:
        metrics=run_files("metrics.json"),
        lib=lib("aggregate", "scalings"),
    output:
        "results/runs.csv",
    log:
        "results/logs/aggregate_runs.log",
    benchmark:
        "results/benchmarks/aggregate_runs.tsv"
    script:
        "../../scripts/aggregate_runs.py"


rule accuracy_table:
    input:
        runs="results/runs.csv",
        lib=lib("aggregate", "scalings"),
    output:
        csv="results/tables/accuracy.csv",
        md="results/tables/accuracy.md",
        tex="results/tables/accuracy.tex",
    log:
        "results/logs/accuracy_table.log",
    benchmark:
        "results/benchmarks/accuracy_table.tsv"
    script:
        "../../scripts/accuracy_table.py"
