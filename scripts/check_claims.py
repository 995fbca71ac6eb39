"""Rule `claims`: verdicts on the claims of PAPER.md -> results/claims.{json,md}.

A result file this config does not produce is simply not an input: its claim is then
reported as not measured.
"""

import logging
from pathlib import Path

from resdepth import claims, jobs

jobs.log_to(snakemake.log[0])
tables = claims.read_tables({name: snakemake.input.get(name) for name in claims.TABLE_NAMES})
checks = claims.check_all(tables, snakemake.params.thresholds)
Path(snakemake.output.json).write_text(claims.claims_json(checks, snakemake.params.thresholds))
Path(snakemake.output.md).write_text(claims.claims_markdown(checks))
for check in checks:
    logging.info("%s: %s (%s)", check.id, check.verdict, check.summary)
