# Submitted on a cluster (the compute), like init_norms, expansion_run and
# expansion_truncation; every other rule is a `localrules:` (tests/test_localrules.py).


rule train:
    """Train one grid cell; a diverged run is recorded, not failed."""
    input:
        data=run_data,
        code=lib("train_run"),
    output:
        metrics="results/runs/{run_id}/metrics.json",
        history="results/runs/{run_id}/history.csv",
        model="results/runs/{run_id}/model.pt",
    log:
        "results/logs/train/{run_id}.log",
    benchmark:
        "results/benchmarks/train/{run_id}.tsv"
    wildcard_constraints:
        run_id=r"[^/]+",
    conda:
        "../../envs/resdepth.yaml"
    threads: config["training"]["threads"]
    resources:
        # Estimates from the job's FLOPs and memory (resdepth.cost): they grow with depth.
        mem_mb=train_resource("mem_mb"),
        runtime=train_resource("runtime"),
        gpu=train_resource("gpu"),
    params:
        cell=run_cell,
        training=settings.result_settings(config["training"]),
        arch_options=run_arch_options,
        augment=run_augment,
        # Outside the outputs: Snakemake deletes a failed job's outputs, not this.
        checkpoint="results/checkpoints/{run_id}.pt",
    script:
        "../../scripts/train_run.py"
