# Claims C1 and C5: residual expansion terms. One job per training run reads that run's
# weights, so a new run adds one job; expansion_tables gathers them. TRAIN_RUNS, GRID_RUNS,
# per_run_files and lib come from common.smk.

EXPANSION = config["expansion"]
EXPANSION_TABLES = ("orders", "truncated_accuracy", "lesion")


# Submitted on a cluster: expansion_run and expansion_truncation (forward passes through
# whole towers). Seconds of work each, run where Snakemake runs:
localrules:
    expansion_tables,
    plot_expansion,
    plot_transformer,


rule expansion_run:
    """Per-order norms (init and trained), truncated-ensemble accuracy and lesions of one run."""
    input:
        data=run_data,
        metrics="results/runs/{run_id}/metrics.json",
        model="results/runs/{run_id}/model.pt",
        code=lib("expansion_run"),
    output:
        **{
            name: f"results/expansion/runs/{{run_id}}/{name}.csv"
            for name in EXPANSION_TABLES
        },
    log:
        "results/logs/expansion/{run_id}.log",
    benchmark:
        "results/benchmarks/expansion/{run_id}.tsv"
    wildcard_constraints:
        run_id=r"[^/]+",
    conda:
        "../../envs/resdepth.yaml"
    threads: EXPANSION["threads"]
    params:
        cell=run_cell,
        # What defines the tables: not the device, threads or evaluation batch
        # (resdepth.settings), nor the truncation study, which is its own rule.
        settings=settings.result_settings(
            {key: value for key, value in EXPANSION.items() if key != "truncation"},
            "expansion",
        ),
        arch_options=run_arch_options,
    script:
        "../../scripts/expansion_run.py"


rule expansion_tables:
    """Gather every run's expansion tables into one file each."""
    input:
        **{
            name: per_run_files(
                f"results/expansion/runs/{{run_id}}/{name}.csv", GRID_RUNS
            )
            for name in EXPANSION_TABLES
        },
        code=lib("expansion_tables"),
    output:
        **{name: f"results/expansion/{name}.csv" for name in EXPANSION_TABLES},
    log:
        "results/logs/expansion_tables.log",
    benchmark:
        "results/benchmarks/expansion_tables.tsv"
    conda:
        "../../envs/resdepth.yaml"
    script:
        "../../scripts/expansion_tables.py"


rule expansion_truncation:
    """Claim C1: order-K truncation error of fresh towers vs λ, with fitted slopes."""
    input:
        data=f"results/data/{EXPANSION['truncation']['dataset']}.pt",
        code=lib("expansion_truncation"),
    output:
        rows="results/expansion/truncation.csv",
        slopes="results/expansion/truncation_slopes.csv",
        per_input="results/expansion/truncation_per_input.csv",
    log:
        "results/logs/expansion_truncation.log",
    benchmark:
        "results/benchmarks/expansion_truncation.tsv"
    conda:
        "../../envs/resdepth.yaml"
    threads: EXPANSION["threads"]
    params:
        settings=EXPANSION["truncation"],
        arch_options=config["arch_options"].get(EXPANSION["truncation"]["arch"], {}),
    script:
        "../../scripts/expansion_truncation.py"


EXPANSION_FIGURES = {
    "truncation": {
        "truncation": "results/expansion/truncation.csv",
        "slopes": "results/expansion/truncation_slopes.csv",
        "per_input": "results/expansion/truncation_per_input.csv",
    },
    "orders": {"orders": "results/expansion/orders.csv"},
    "truncated_accuracy": {
        "truncated_accuracy": "results/expansion/truncated_accuracy.csv"
    },
    "lesion": {"lesion": "results/expansion/lesion.csv"},
}


rule plot_expansion:
    """Claims C1, C5: one expansion figure (truncation, orders, truncated_accuracy, lesion)."""
    input:
        unpack(expansion_figure_tables),
        lib=lib("plot_expansion"),
    output:
        pdf="results/figures/expansion_{figure}.pdf",
        png=report(
            "results/figures/expansion_{figure}.png",
            caption="../report/expansion.rst",
            category="C1, C5: residual expansion",
            labels={"kind": "figure", "shows": "expansion: {figure}"},
        ),
    log:
        "results/logs/plot_expansion_{figure}.log",
    benchmark:
        "results/benchmarks/plot_expansion_{figure}.tsv"
    wildcard_constraints:
        figure="|".join(EXPANSION_FIGURES),
    conda:
        "../../envs/resdepth.yaml"
    params:
        draw="expansion_plots.{figure}_figure",
    script:
        "../../scripts/plot_expansion.py"


# Issue 20: the expansion of fresh transformers (config section `transformer`, read in
# init_norms.smk as TRANSFORMER): C1 truncation slopes and C6 radius of convergence.
rule expansion_truncation_transformer:
    """Claim C1 on transformers: order-K truncation error vs a common λ, and its slopes."""
    input:
        data=transformer_study_data("truncation"),
        code=lib("expansion_truncation_transformer"),
    output:
        rows="results/expansion/truncation_transformer.csv",
        slopes="results/expansion/truncation_transformer_slopes.csv",
    log:
        "results/logs/expansion_truncation_transformer.log",
    benchmark:
        "results/benchmarks/expansion_truncation_transformer.tsv"
    conda:
        "../../envs/resdepth.yaml"
    threads: EXPANSION["threads"]
    params:
        study=TRANSFORMER.get("truncation"),
        arch_options=config["arch_options"].get("transformer", {}),
    script:
        "../../scripts/expansion_truncation_transformer.py"


rule radius_transformer:
    """Claim C6: the radius of convergence of fresh transformers' λ-series vs depth."""
    input:
        data=transformer_study_data("radius"),
        code=lib("radius_transformer"),
    output:
        "results/radius_transformer.csv",
    log:
        "results/logs/radius_transformer.log",
    benchmark:
        "results/benchmarks/radius_transformer.tsv"
    conda:
        "../../envs/resdepth.yaml"
    threads: EXPANSION["threads"]
    params:
        study=TRANSFORMER.get("radius"),
        arch_options=config["arch_options"].get("transformer", {}),
    script:
        "../../scripts/radius_transformer.py"


# The transformer figures whose tables this config makes: the studies at init (section
# `transformer`) and those of trained transformer runs (the grid's arch).
TRANSFORMER_FIGURES = {
    **(
        {
            "init_norms": {"norms": "results/init_norms_transformer.csv"},
            "truncation": {
                "truncation": "results/expansion/truncation_transformer.csv",
                "slopes": "results/expansion/truncation_transformer_slopes.csv",
                "radius": "results/radius_transformer.csv",
            },
            "radius": {"radius": "results/radius_transformer.csv"},
        }
        if TRANSFORMER
        else {}
    ),
    **(
        {
            "orders": {"orders": "results/expansion/orders.csv"},
            "truncated_accuracy": {
                "truncated_accuracy": "results/expansion/truncated_accuracy.csv"
            },
        }
        if "transformer" in config["grid"]["arch"]
        else {}
    ),
}
# What the default target asks of the transformer figures (none without transformers).
TRANSFORMER_OUTPUTS = expand(
    "results/figures/transformer_{figure}.pdf", figure=TRANSFORMER_FIGURES
)


rule plot_transformer:
    """Transformers: one figure (init_norms, truncation, radius at init; orders and
    truncated_accuracy of trained runs)."""
    input:
        unpack(transformer_figure_tables),
        lib=lib("plot_expansion"),
    output:
        pdf="results/figures/transformer_{figure}.pdf",
        png=report(
            "results/figures/transformer_{figure}.png",
            caption="../report/transformer.rst",
            category="Transformers (issue 20)",
            labels={"kind": "figure", "shows": "transformer: {figure}"},
        ),
    log:
        "results/logs/plot_transformer_{figure}.log",
    benchmark:
        "results/benchmarks/plot_transformer_{figure}.tsv"
    wildcard_constraints:
        figure="|".join(TRANSFORMER_FIGURES) or "none",
    conda:
        "../../envs/resdepth.yaml"
    params:
        draw="transformer_plots.{figure}_transformer_figure",
    script:
        "../../scripts/plot_expansion.py"
