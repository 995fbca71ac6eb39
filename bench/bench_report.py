"""Benchmark of the paper artifacts and the report (issue 7); prints figures, asserts nothing.

Run from the repository root after a complete run (``snakemake --cores all``), with the
same config:

    python bench/bench_report.py [--repeats 3] [--configfile config/config.yaml]

Median wall time over the repeats of:
1. a dry run: planning the DAG, the fixed cost of every snakemake call;
2. ``snakemake --report`` into a temporary folder (results/ is left alone);
3. the artifact rules alone: ``claims`` and ``paper`` forced to run again;
and the size of the report.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARTIFACT_RULES = ("claims", "paper")


def timed(args, repeats):
    """Median wall time of ``snakemake <args>`` in the repository root."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "snakemake", *args], cwd=REPO, check=True, capture_output=True
        )
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--configfile", help="the config the run used (default: embedded)")
    options = parser.parse_args()
    config = ["--configfile", options.configfile] if options.configfile else []
    planned = subprocess.run(
        [sys.executable, "-m", "snakemake", "--dry-run", *config],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if planned.returncode != 0 or "Nothing to be done" not in planned.stdout + planned.stderr:
        sys.exit("the pipeline is not up to date: run `snakemake --cores all` first")

    dry_run = timed(["--dry-run", *config], options.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.html"
        report_time = timed(["--report", str(report), *config], options.repeats)
        report_size = report.stat().st_size
    artifacts = timed(
        ["--cores", "2", *ARTIFACT_RULES, "--forcerun", *ARTIFACT_RULES, *config],
        options.repeats,
    )
    rows = [
        ("dry run (planning the DAG)", dry_run, ""),
        ("snakemake --report", report_time, f"report {report_size / 1e6:.1f} MB"),
        (f"artifact rules ({', '.join(ARTIFACT_RULES)}), forced", artifacts, ""),
    ]
    for label, seconds, note in rows:
        print(f"{label:<40} {seconds:6.1f} s   {note}")
    print(f"median of {options.repeats} repeat(s)")


if __name__ == "__main__":
    main()
