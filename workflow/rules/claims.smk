# Claims C1-C5 of docs/science.md §3 checked on this run's results. A result file this config does
# not produce (the λ sweep is optional) is not an input: its claim is then reported as not
# measured. The verdicts (claims) and the page that embeds the figures (claims_page) are
# two rules, so that redrawing a figure redraws the page and recomputes no verdict.


# Seconds of work: on a cluster, run them where Snakemake runs instead of submitting them.
localrules:
    claims,
    claims_page,


#: The figure of each claim this config draws (resdepth.claims.CLAIMS), by claim id.
CLAIM_FIGURES = {
    "C1": "results/figures/expansion_truncation.png",
    "C2": rules.plot_init_norms.output.png,
    "C3": rules.plot_accuracy_vs_depth.output.png,
    **({"C4": rules.plot_capacity.output.gc_png} if CAPACITY_RUNS else {}),
    "C5": "results/figures/expansion_truncated_accuracy.png",
    # the transformer claims' figures, where this config draws them
    **{
        claim: f"results/figures/transformer_{figure}.png"
        for claim, figure in (
            ("C1T", "truncation"),
            ("C2T", "init_norms"),
            ("C6", "radius"),
            ("C7", "truncated_accuracy"),
        )
        if figure in TRANSFORMER_FIGURES
    },
}


rule claims:
    """Verdicts on claims C1-C5 and the transformer claims, from the results with the
    config's thresholds."""
    input:
        **(
            {"capacity_sweep": rules.capacity_tables.output.sweep}
            if CAPACITY_RUNS
            else {}
        ),
        **(
            {
                "truncation_transformer_slopes": rules.expansion_truncation_transformer.output.slopes,
                "init_norms_transformer": rules.init_norms_transformer.output[0],
                "radius_transformer": rules.radius_transformer.output[0],
            }
            if TRANSFORMER
            else {}
        ),
        truncation=rules.expansion_truncation.output.rows,
        truncation_slopes=rules.expansion_truncation.output.slopes,
        truncation_per_input=rules.expansion_truncation.output.per_input,
        init_norms=rules.init_norms.output[0],
        runs=rules.aggregate_runs.output[0],
        # each run's outcome on every test image: C3's gap compares two runs image by image
        test_correct=run_files("test_correct.npy", GRID_RUNS),
        data_manifests=expand(
            "results/data/{dataset}.json",
            dataset=sorted(set(config["grid"]["dataset"])),
        ),
        orders=rules.expansion_tables.output.orders,
        truncated_accuracy=rules.expansion_tables.output.truncated_accuracy,
        # the transformer studies at init (claims C1T, C2T, C6), where the config has them
        lib=lib("check_claims"),
    output:
        json="results/claims.json",
        md="results/claims.md",
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


rule claims_page:
    """The claims check as a page for the report, each verdict's figure embedded in it."""
    input:
        **CLAIM_FIGURES,
        json=rules.claims.output.json,
        lib=lib("claims_page"),
    output:
        report(
            "results/claims.html",
            caption="../report/claims.rst",
            category="Claims check",
            labels={"kind": "table", "shows": "verdicts on claims C1-C5"},
        ),
    log:
        "results/logs/claims_page.log",
    benchmark:
        "results/benchmarks/claims_page.tsv"
    conda:
        "../../envs/resdepth.yaml"
    script:
        "../../scripts/claims_page.py"
