# The identity of the config the results are made with (results/config.json), and the
# check that a report describes the results it embeds: `snakemake --report` with a
# config other than the recorded one stops here, naming the settings that differ.
import sys

from resdepth import config_identity

if config_identity.report_requested(sys.argv):
    config_identity.check_report_config(config)


# Writes one small file: on a cluster, run it where Snakemake runs.
localrules:
    record_config,


rule record_config:
    """The result-defining config and its digest: what the report checks its config against."""
    input:
        lib=lib("record_config"),
    output:
        config_identity.RECORD,
    log:
        "results/logs/record_config.log",
    benchmark:
        "results/benchmarks/record_config.tsv"
    conda:
        "../../envs/resdepth.yaml"
    params:
        digest=config_identity.digest(config),
    script:
        "../../scripts/record_config.py"
