"""What every job does: log into its log file, and show a failure's message on the console."""

import math
import subprocess
import sys

import pytest
from conftest import REPO

from resdepth import jobs

FAILING_JOB = """
import sys
sys.path.insert(0, {scripts!r})
from resdepth import jobs
jobs.log_to({log!r})
raise ValueError("archive x.tar.gz has MD5 abc, expected def")
"""


def test_a_failing_jobs_message_reaches_the_console_and_its_traceback_the_log(tmp_path):
    """Snakemake shows only "Error in rule ..., check log file(s)"; the cause must be
    visible without opening the log."""
    log = tmp_path / "job.log"
    script = FAILING_JOB.format(scripts=str(REPO / "scripts"), log=str(log))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 1
    assert "ValueError: archive x.tar.gz has MD5 abc, expected def" in result.stderr
    assert str(log) in result.stderr and "Traceback" not in result.stderr
    assert "Traceback" in log.read_text() and "expected def" in log.read_text()


def test_json_results_refuse_non_finite_numbers(tmp_path):
    """``json.dumps`` writes NaN as ``NaN``, which is not JSON (a metrics.json once held
    ``"lr": NaN``); the job fails instead, and writes nothing."""
    path = tmp_path / "metrics.json"
    for value in (math.nan, math.inf):
        with pytest.raises(ValueError, match="metrics.json.*not JSON compliant"):
            jobs.write_json({"lr": value}, path)
    assert list(tmp_path.iterdir()) == []
    jobs.write_json({"lr": 0.02, "test_acc": None}, path)
    assert path.read_text() == '{\n  "lr": 0.02,\n  "test_acc": null\n}\n'
