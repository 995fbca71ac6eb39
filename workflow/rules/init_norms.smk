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
