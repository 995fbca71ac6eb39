"""Rule `claims_page`: results/claims.json + each claim's figure -> results/claims.html,
the figures embedded (the report shows the page as a data URL, where links go nowhere)."""

import logging
from pathlib import Path

from resdepth import claims, jobs

jobs.log_to(snakemake.log[0])
checks = claims.checks_from_json(Path(snakemake.input.json).read_text())
figures = {
    c.id: Path(snakemake.input[c.id]).read_bytes() for c in checks if c.id in snakemake.input.keys()
}
Path(snakemake.output[0]).write_text(claims.claims_html(checks, figures))
logging.info("claims page with %d figures embedded", len(figures))
