# Submitted on a cluster (the compute), like init_norms, expansion_run and
# expansion_truncation; every other rule is a `localrules:` (tests/test_localrules.py).


rule train:
    """Train one grid cell; a diverged run is recorded, not failed."""
    input:
        data=lambda w: f"results/data/{grid.cell_for(TRAIN_RUNS, w.run_id)['dataset']}.pt",
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
        mem_mb=lambda w, attempt: train_resources(w, attempt)["mem_mb"],
        runtime=lambda w: train_resources(w)["runtime"],
        gpu=lambda w: train_resources(w)["gpu"],
    params:
        cell=lambda w: grid.cell_for(TRAIN_RUNS, w.run_id),
        training=settings.result_settings(config["training"]),
        arch_options=lambda w: config["arch_options"].get(
            grid.cell_for(TRAIN_RUNS, w.run_id)["arch"], {}
        ),
        augment=lambda w: config["datasets"][
            grid.cell_for(TRAIN_RUNS, w.run_id)["dataset"]
        ].get("augment", False),
        # Outside the outputs: Snakemake deletes a failed job's outputs, not this.
        checkpoint=lambda w: f"results/checkpoints/{w.run_id}.pt",
    script:
        "../../scripts/train_run.py"
