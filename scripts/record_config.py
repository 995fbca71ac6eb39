"""Rule record_config: the result-defining config -> results/config.json (its identity,
checked by ``snakemake --report``)."""

import logging
from pathlib import Path

from resdepth import config_identity, jobs

jobs.log_to(snakemake.log[0])
Path(snakemake.output[0]).write_text(config_identity.record(snakemake.config) + "\n")
logging.info("config digest %s", config_identity.digest(snakemake.config))
