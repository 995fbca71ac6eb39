# Claim C4: the λ sweep (config `capacity`). Its runs are ordinary training runs (rule
# train); these rules only read them back.

CAPACITY_RUNS = grid.capacity_runs(config)
CAPACITY_LIB = lib("capacity", "scalings")


rule capacity_tables:
    """The sweep's runs: final/peak GC, accuracy and loss per run; GC over training."""
    input:
        metrics=run_files("metrics.json", CAPACITY_RUNS),
        histories=run_files("history.csv", CAPACITY_RUNS),
        lib=CAPACITY_LIB,
    output:
        sweep="results/capacity/gc_vs_lambda.csv",
        history="results/capacity/gc_history.csv",
    log:
        "results/logs/capacity_tables.log",
    benchmark:
        "results/benchmarks/capacity_tables.tsv"
    conda:
        "../../envs/resdepth.yaml"
    script:
        "../../scripts/capacity_tables.py"


rule capacity_unimodality:
    """Is GC(λ) unimodal? The documented test, per seed and for the seed mean."""
    input:
        sweep=rules.capacity_tables.output.sweep,
        lib=CAPACITY_LIB,
    output:
        "results/capacity/unimodality.json",
    log:
        "results/logs/capacity_unimodality.log",
    benchmark:
        "results/benchmarks/capacity_unimodality.tsv"
    conda:
        "../../envs/resdepth.yaml"
    script:
        "../../scripts/capacity_unimodality.py"


#: What `all` asks of the sweep: nothing when the config has no `capacity` section.
CAPACITY_OUTPUTS = (
    [*rules.capacity_tables.output, *rules.capacity_unimodality.output]
    if CAPACITY_RUNS
    else []
)
