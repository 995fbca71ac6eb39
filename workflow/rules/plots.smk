# Figures (PDF + PNG). They depend on the plotting modules but not on the model or
# training code, so a plotting change redraws only figures.


# Seconds of work each: on a cluster, run them where Snakemake runs instead of
# submitting them.
localrules:
    plot_init_norms,
    plot_accuracy_vs_depth,
    plot_training_curves,


rule plot_init_norms:
    """Claim C2: init output norm vs depth per scaling."""
    input:
        norms="results/init_norms.csv",
        lib=lib("plot_init_norms"),
    output:
        pdf="results/figures/init_norms.pdf",
        png=report(
            "results/figures/init_norms.png",
            caption="../report/init_norms.rst",
            category="C2: explosion at initialisation",
            labels={
                "kind": "figure",
                "shows": "output norm at initialisation vs depth",
            },
        ),
    log:
        "results/logs/plot_init_norms.log",
    benchmark:
        "results/benchmarks/plot_init_norms.tsv"
    conda:
        "../../envs/resdepth.yaml"
    script:
        "../../scripts/plot_init_norms.py"


rule plot_accuracy_vs_depth:
    """Claim C3: final test accuracy vs depth per scaling."""
    input:
        runs="results/runs.csv",
        lib=lib("plot_accuracy_vs_depth"),
    output:
        pdf="results/figures/accuracy_vs_depth.pdf",
        png=report(
            "results/figures/accuracy_vs_depth.png",
            caption="../report/accuracy_vs_depth.rst",
            category="C3: training across depth",
            labels={"kind": "figure", "shows": "test accuracy vs depth"},
        ),
    log:
        "results/logs/plot_accuracy_vs_depth.log",
    benchmark:
        "results/benchmarks/plot_accuracy_vs_depth.tsv"
    conda:
        "../../envs/resdepth.yaml"
    script:
        "../../scripts/plot_accuracy_vs_depth.py"


rule plot_training_curves:
    """Test accuracy and train loss per epoch of every run."""
    input:
        runs="results/runs.csv",
        histories=run_files("history.csv", GRID_RUNS),
        lib=lib("plot_training_curves"),
    output:
        pdf="results/figures/training_curves.pdf",
        png=report(
            "results/figures/training_curves.png",
            caption="../report/training_curves.rst",
            category="C3: training across depth",
            labels={
                "kind": "figure",
                "shows": "test accuracy and train loss per epoch",
            },
        ),
    log:
        "results/logs/plot_training_curves.log",
    benchmark:
        "results/benchmarks/plot_training_curves.tsv"
    conda:
        "../../envs/resdepth.yaml"
    script:
        "../../scripts/plot_training_curves.py"
