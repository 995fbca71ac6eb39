# Submitted on a cluster: forward passes through towers up to the sweep's deepest.


rule init_norms:
    """Claim C2: output norm of untrained towers vs depth, per scaling."""
    input:
        data=f"results/data/{config['init_norms']['dataset']}.pt",
        code=lib("init_norms"),
    output:
        "results/init_norms.csv",
    log:
        "results/logs/init_norms.log",
    benchmark:
        "results/benchmarks/init_norms.tsv"
    conda:
        "../../envs/resdepth.yaml"
    threads: 1
    params:
        sweep=config["init_norms"],
        arch_options=config["arch_options"].get(config["init_norms"]["arch"], {}),
    script:
        "../../scripts/init_norms.py"


# Issue 20: the same for fresh transformers, pre-LN and norm-free, when the config has a
# `transformer` section (TRANSFORMER in common.smk; expansion.smk has the other studies).
rule init_norms_transformer:
    """Claim C2 for transformers: ‖x_n‖/‖x_0‖ and token cosine similarity vs depth."""
    input:
        data=transformer_study_data("init_norms"),
        code=lib("init_norms_transformer"),
    output:
        "results/init_norms_transformer.csv",
    log:
        "results/logs/init_norms_transformer.log",
    benchmark:
        "results/benchmarks/init_norms_transformer.tsv"
    conda:
        "../../envs/resdepth.yaml"
    threads: config["expansion"]["threads"]
    params:
        study=TRANSFORMER.get("init_norms"),
        arch_options=config["arch_options"].get("transformer", {}),
    script:
        "../../scripts/init_norms_transformer.py"
