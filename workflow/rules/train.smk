# Submitted on a cluster (the compute), like init_norms, expansion_run and
# expansion_truncation; every other rule is a `localrules:` (tests/test_localrules.py).
"""Training: one job per pack (resdepth.packs) → results/runs/<run_id>/{metrics.json,
history.csv,model.pt,test_correct.npy} for each of its runs.

A pack's runs differ only in their scaling; its job (resdepth.train_job) trains them one
after another in one process, each as it would alone, and writes each run's files the
moment it ends; with training.packing.enabled false every run is a pack of one. The rules
are generated, one per pack and named train_<pack id> (a rule's outputs are fixed
patterns, a pack has several runs). The pack id reaches the job as a resource, like the
rest of how it runs: the params are only the result-defining settings, the same for every
pack, so packing is execution only and switching it reruns nothing. A pack that gains a
run (a new scaling in the config) is one job with a missing output: its finished runs are
put back from what their job kept (train_job.keep), not trained again, and only the new
run trains.
"""

for pack_id, members in PACKS.items():

    rule:
        name:
            packs.rule_name(pack_id)
        input:
            data=f"results/data/{TRAIN_RUNS[members[0]]['dataset']}.pt",
            code=lib("train_run"),
        output:
            metrics=per_run_files("results/runs/{run_id}/metrics.json", members),
            history=per_run_files("results/runs/{run_id}/history.csv", members),
            model=per_run_files("results/runs/{run_id}/model.pt", members),
            test_correct=per_run_files(
                "results/runs/{run_id}/test_correct.npy", members
            ),
        log:
            f"results/logs/train/{pack_id}.log",
        benchmark:
            f"results/benchmarks/train/{pack_id}.tsv"
        conda:
            "../../envs/resdepth.yaml"
        threads: config["training"]["threads"]
        resources:
            **site_resources(),  # training.site_resources: one place for all packs
            # Estimates from the members' FLOPs and memory (resdepth.cost): they grow
            # with depth and add up over a pack's members.
            mem_mb=pack_resource(pack_id, "mem_mb"),
            runtime=pack_resource(pack_id, "runtime"),
            gpu=pack_resource(pack_id, "gpu"),
            # Which pack the job trains (metrics.json records it; it names the packed
            # backend's checkpoint). Not a param: a new plan must retrain nothing.
            pack=pack_id,
            # On SLURM, SIGTERM two minutes before the time limit: the pack checkpoints
            # and stops, is retried and resumes instead of being killed mid-epoch. (TERM,
            # not USR1: the Snakemake process that runs the job inside SLURM waits for the
            # script on SIGTERM but dies at once on SIGUSR1.) Other executors ignore it.
            slurm_extra="--signal=TERM@120",
        params:
            **train_params(pack_id),
        script:
            "../../scripts/train_run.py"
