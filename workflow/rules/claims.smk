# Claims C1-C5 of PAPER.md checked on this run's results. A result file this config does
# not produce is not an input; its claim is then reported as not measured.


rule claims:
    """Verdicts on claims C1-C5, computed from the results with the config's thresholds."""
    input:
        init_norms=rules.init_norms.output[0],
        accuracy=rules.accuracy_table.output.csv,
        lib=lib("claims", "aggregate", "scalings", "jobs"),
    output:
        json="results/claims.json",
        md="results/claims.md",
        html=report(
            "results/claims.html",
            caption="../report/claims.rst",
            category="Claims check",
        ),
    log:
        "results/logs/claims.log",
    benchmark:
        "results/benchmarks/claims.tsv"
    conda:
        "../../envs/resdepth.yaml"
    params:
        thresholds=config["claims"],
    script:
        "../../scripts/check_claims.py"
