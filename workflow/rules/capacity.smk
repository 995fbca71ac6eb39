# Claim C4: the λ sweep (config `capacity`). Its runs are ordinary training runs (rule
# train); these rules only read them back.

CAPACITY_RUNS = grid.capacity_runs(config)


# Seconds of work each: on a cluster, run them where Snakemake runs instead of
# submitting them.
localrules:
    capacity_tables,
    capacity_unimodality,
    plot_capacity,


rule capacity_tables:
    """The sweep's runs: GC at init, end and peak, flags, accuracy and loss per run; GC
    over training."""
    input:
        metrics=run_files("metrics.json", CAPACITY_RUNS),
        histories=run_files("history.csv", CAPACITY_RUNS),
        manifest=capacity_manifest,
        lib=lib("capacity_tables"),
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
    """The shape of GC(λ) below the stability limit, per seed and for the seed mean,
    without noise (a description; claim C4's test is in the claims rule)."""
    input:
        sweep=rules.capacity_tables.output.sweep,
        lib=lib("capacity_unimodality"),
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


rule plot_capacity:
    """GC vs λ, test accuracy vs λ, and GC through training coloured by λ."""
    input:
        sweep=rules.capacity_tables.output.sweep,
        history=rules.capacity_tables.output.history,
        lib=lib("plot_capacity"),
    output:
        gc_pdf="results/figures/capacity_gc_vs_lambda.pdf",
        gc_png=report(
            "results/figures/capacity_gc_vs_lambda.png",
            caption="../report/capacity_gc_vs_lambda.rst",
            category="C4: λ as a capacity knob",
            labels={"kind": "figure", "shows": "geometric complexity vs λ"},
        ),
        accuracy_pdf="results/figures/capacity_accuracy_vs_lambda.pdf",
        accuracy_png=report(
            "results/figures/capacity_accuracy_vs_lambda.png",
            caption="../report/capacity_accuracy_vs_lambda.rst",
            category="C4: λ as a capacity knob",
            labels={"kind": "figure", "shows": "test accuracy vs λ"},
        ),
        training_pdf="results/figures/capacity_gc_over_training.pdf",
        training_png=report(
            "results/figures/capacity_gc_over_training.png",
            caption="../report/capacity_gc_over_training.rst",
            category="C4: λ as a capacity knob",
            labels={
                "kind": "figure",
                "shows": "geometric complexity through training",
            },
        ),
    log:
        "results/logs/plot_capacity.log",
    benchmark:
        "results/benchmarks/plot_capacity.tsv"
    conda:
        "../../envs/resdepth.yaml"
    script:
        "../../scripts/plot_capacity.py"


#: What `all` asks of the sweep: nothing when the config has no `capacity` section.
CAPACITY_OUTPUTS = (
    [
        *rules.capacity_tables.output,
        *rules.capacity_unimodality.output,
        *rules.plot_capacity.output,
    ]
    if CAPACITY_RUNS
    else []
)
