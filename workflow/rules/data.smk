# Seconds of work, and downloads need the internet: on a cluster, run data preparation
# where Snakemake runs instead of submitting it.
localrules:
    digits,


rule digits:
    """scikit-learn's bundled 8x8 digits: stratified split, standardised, as tensors."""
    input:
        lib("data"),
    output:
        tensors="results/data/digits.pt",
        manifest="results/data/digits.json",
    log:
        "results/logs/digits.log",
    benchmark:
        "results/benchmarks/digits.tsv"
    conda:
        "../../envs/resdepth.yaml"
    params:
        settings=config["datasets"].get("digits"),
    script:
        "../../scripts/prepare_digits.py"
