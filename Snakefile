# resdepth: reproduce and extend "On residual network depth" (Dherin & Munn, 2025).
# This file only wires the stages; the rules live in workflow/rules/, the science in
# scripts/resdepth/. See README.md.


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/init_norms.smk"


rule all:
    default_target: True
    input:
        run_files("metrics.json"),
        "results/init_norms.csv",
