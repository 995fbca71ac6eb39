# `snakemake paper`: everything that stands in for the paper's tables and figures, in
# results/paper/. Figures and the LaTeX/Markdown table are byte copies of the plotting and
# aggregation rules' outputs, so each has one source; the table's HTML page is made here.


# File copies: on a cluster, run it where Snakemake runs instead of submitting it.
localrules:
    paper,


#: Every figure the pipeline draws (PDF and PNG), as the plotting rules write them.
FIGURES = [
    *rules.plot_init_norms.output,
    *rules.plot_accuracy_vs_depth.output,
    *rules.plot_training_curves.output,
    *expand(rules.plot_expansion.output, figure=EXPANSION_FIGURES),
    *(rules.plot_capacity.output if CAPACITY_RUNS else []),
    *expand(rules.plot_transformer.output, figure=TRANSFORMER_FIGURES),
]


rule paper:
    """The paper's artifacts: accuracy table (LaTeX, Markdown, HTML), figures (PDF, PNG)."""
    input:
        figures=FIGURES,
        tables=[rules.accuracy_table.output.md, rules.accuracy_table.output.tex],
        runs=rules.aggregate_runs.output[0],
        lib=lib("paper_artifacts"),
    output:
        figures=[f.replace("results/figures/", "results/paper/") for f in FIGURES],
        tables=["results/paper/accuracy.md", "results/paper/accuracy.tex"],
        html=report(
            "results/paper/accuracy.html",
            caption="../report/accuracy_table.rst",
            category="C3: training across depth",
            labels={
                "kind": "table",
                "shows": "test accuracy, scaling x depth (Table 1)",
            },
        ),
    log:
        "results/logs/paper.log",
    benchmark:
        "results/benchmarks/paper.tsv"
    conda:
        "../../envs/resdepth.yaml"
    script:
        "../../scripts/paper_artifacts.py"
