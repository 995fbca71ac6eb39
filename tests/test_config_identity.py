"""The config identity a report checks its config against (resdepth/config_identity.py)."""

import copy
import json

import pytest
from conftest import default_config

from resdepth import config_identity


def test_execution_settings_leave_the_identity_unchanged():
    config = default_config()
    moved = copy.deepcopy(config)
    moved["training"]["threads"] = 7
    moved["training"]["device"] = "cuda"
    moved["expansion"]["eval_batch_size"] = 17
    assert config_identity.digest(moved) == config_identity.digest(config)
    changed = copy.deepcopy(config)
    changed["grid"]["seed"] = [*config["grid"]["seed"], 99]
    assert config_identity.digest(changed) != config_identity.digest(config)


def test_report_check_names_the_settings_that_differ(tmp_path):
    config = default_config()
    record = tmp_path / "config.json"
    with pytest.raises(ValueError, match="config.json is missing"):
        config_identity.check_report_config(config, record)
    record.write_text(config_identity.record(config))
    config_identity.check_report_config(config, record)  # the same config: no error
    other = copy.deepcopy(config)
    other["grid"]["epochs"] = [1]
    other["claims"]["C3"]["confidence"] = 0.5
    with pytest.raises(ValueError) as refused:
        config_identity.check_report_config(other, record)
    message = str(refused.value)
    assert f"grid.epochs: results have {config['grid']['epochs']!r}, this config has [1]" in message
    assert "claims.C3.confidence: results have 0.95, this config has 0.5" in message
    assert message.index("grid.epochs") < message.index("claims.C3")  # the grid first
    assert json.loads(record.read_text())["digest"] == config_identity.digest(config)


@pytest.mark.parametrize(
    ("argv", "asks"),
    [
        (["snakemake", "--report", "r.html"], True),
        (["snakemake", "--report=r.html"], True),
        (["snakemake", "--report", "r.html", "--report-after-run"], False),
        (["snakemake", "--cores", "1"], False),
    ],
)
def test_report_requested_reads_the_command_line(argv, asks):
    assert config_identity.report_requested(argv) is asks
