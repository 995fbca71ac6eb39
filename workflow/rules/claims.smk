# Claims C1-C5 of docs/science.md §3 checked on this run's results. A result file this config does
# not produce (the λ sweep is optional) is not an input: its claim is then reported as not
# measured.


# Seconds of work: on a cluster, run it where Snakemake runs instead of submitting it.
localrules:
    claims,


rule claims:
    """Verdicts on claims C1-C5, computed from the results with the config's thresholds."""
    input:
        **(
            {"capacity_sweep": rules.capacity_tables.output.sweep}
            if CAPACITY_RUNS
            else {}
        ),
        truncation=rules.expansion_truncation.output.rows,
        truncation_slopes=rules.expansion_truncation.output.slopes,
        truncation_per_input=rules.expansion_truncation.output.per_input,
        init_norms=rules.init_norms.output[0],
        runs=rules.aggregate_runs.output[0],
        data_manifests=expand(
            "results/data/{dataset}.json",
            dataset=sorted(set(config["grid"]["dataset"])),
        ),
        orders=rules.expansion_tables.output.orders,
        truncated_accuracy=rules.expansion_tables.output.truncated_accuracy,
        lib=lib("check_claims"),
    output:
        json="results/claims.json",
        md="results/claims.md",
        html=report(
            "results/claims.html",
            caption="../report/claims.rst",
            category="Claims check",
            labels={"kind": "table", "shows": "verdicts on claims C1-C5"},
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
