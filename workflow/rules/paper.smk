# `snakemake paper`: everything that stands in for the paper's tables and figures, in
# results/paper/. Figures and the LaTeX/Markdown table are byte copies of the plotting and
# aggregation rules' outputs, so each has one source; the table's HTML page is made here.

PAPER_FIGURES = ["init_norms", "accuracy_vs_depth", "training_curves"]


rule paper:
    """The paper's artifacts: accuracy table (LaTeX, Markdown, HTML), figures (PDF, PNG)."""
    input:
        figures=expand(
            "results/figures/{name}.{ext}", name=PAPER_FIGURES, ext=["pdf", "png"]
        ),
        tables=[rules.accuracy_table.output.md, rules.accuracy_table.output.tex],
        runs=rules.aggregate_runs.output[0],
        lib=lib("paper", "aggregate", "scalings", "jobs"),
    output:
        figures=expand(
            "results/paper/{name}.{ext}", name=PAPER_FIGURES, ext=["pdf", "png"]
        ),
        tables=["results/paper/accuracy.md", "results/paper/accuracy.tex"],
        html=report(
            "results/paper/accuracy.html",
            caption="../report/accuracy_table.rst",
            category="C3 training",
        ),
    log:
        "results/logs/paper.log",
    benchmark:
        "results/benchmarks/paper.tsv"
    conda:
        "../../envs/resdepth.yaml"
    script:
        "../../scripts/paper_artifacts.py"
