# resdepth: reproduce and extend "On residual network depth" (Dherin & Munn, 2025).
# This file only wires the stages; the rules live in workflow/rules/, the science in
# scripts/resdepth/. See README.md.


include: "workflow/rules/common.smk"
include: "workflow/rules/identity.smk"
include: "workflow/rules/plan.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/init_norms.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/plots.smk"
include: "workflow/rules/expansion.smk"
include: "workflow/rules/capacity.smk"
include: "workflow/rules/claims.smk"
include: "workflow/rules/paper.smk"


report: "workflow/report/workflow.rst"


rule all:
    default_target: True
    input:
        # Every run's own files too: one deleted by hand is rebuilt (recovered, see
        # train_job.recover), not left missing behind up-to-date tables.
        run_files("metrics.json"),
        run_files("history.csv"),
        run_files("model.pt"),
        rules.accuracy_table.output,
        rules.plot_init_norms.output,
        rules.plot_accuracy_vs_depth.output,
        rules.plot_training_curves.output,
        expand("results/figures/expansion_{figure}.pdf", figure=EXPANSION_FIGURES),
        CAPACITY_OUTPUTS,
        TRANSFORMER_OUTPUTS,
        rules.claims.output,
        rules.claims_page.output,
        rules.paper.output,
        rules.record_config.output,
