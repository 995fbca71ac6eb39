"""The identity of the config a set of results was made with, so that a report over
``results/`` can refuse a config that describes other results.

Torch-free: the Snakefile checks it while planning. The identity covers the
result-defining settings only (``settings.EXECUTION_SETTINGS`` left out, and where a data
archive lies on this machine): the same results made on a laptop or a cluster, by
another thread count, have the same identity.
"""

import hashlib
import json
from pathlib import Path

from resdepth import settings

#: Where the pipeline records the identity of the config its results were made with.
RECORD = "results/config.json"


def result_config(config):
    """``config`` less its execution-only settings: what decides the results."""
    result = dict(config)
    for section in settings.EXECUTION_SETTINGS:
        if section in result:
            result[section] = settings.result_settings(result[section], section)
    result["datasets"] = {
        name: {k: v for k, v in values.items() if k != "archive"}  # checked by MD5 anyway
        for name, values in config["datasets"].items()
    }
    return result


def digest(config):
    """SHA-256 of the result-defining config, keys sorted: its identity."""
    text = json.dumps(result_config(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def record(config):
    """The JSON text ``RECORD`` holds: the digest and the settings it is taken over."""
    return json.dumps({"digest": digest(config), "config": result_config(config)}, indent=2)


def differences(recorded, current, prefix=""):
    """``key: results have X, this config has Y`` for each setting that differs."""
    lines = []
    # The grid first: it says most plainly which results these are.
    for key in sorted(set(recorded) | set(current), key=lambda k: (k != "grid", str(k))):
        here, there = recorded.get(key), current.get(key)
        name = f"{prefix}{key}"
        if isinstance(here, dict) and isinstance(there, dict):
            lines += differences(here, there, f"{name}.")
        elif here != there:
            lines.append(f"{name}: results have {here!r}, this config has {there!r}")
    return lines


def report_requested(argv):
    """Whether the command line asks for a report of existing results (``--report``
    without ``--report-after-run``, which records this config first)."""
    asks = any(arg == "--report" or arg.startswith("--report=") for arg in argv)
    return asks and "--report-after-run" not in argv


def check_report_config(config, record_path=RECORD, shown=6):
    """Refuse (ValueError naming the settings) to report on results made with another
    config than ``config``, or results that do not say which config made them."""
    path = Path(record_path)
    if not path.exists():
        raise ValueError(
            f"--report: {path} is missing, so nothing says which config made these results; "
            "run the pipeline with this config first (it records the config there)"
        )
    recorded = json.loads(path.read_text())
    if recorded["digest"] == digest(config):
        return
    diffs = differences(recorded["config"], result_config(config))
    more = f"\n  ... and {len(diffs) - shown} more" if len(diffs) > shown else ""
    raise ValueError(
        f"--report: the results in {path.parent}/ were made with another config than the one "
        f"given ({path} records digest {recorded['digest'][:12]}, this config is "
        f"{digest(config)[:12]}):\n  " + "\n  ".join(diffs[:shown]) + more + "\n"
        "Report with the config the results were made with, or run the pipeline with this one."
    )
