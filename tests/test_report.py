"""The claims check, results/paper/ and the Snakemake report, on the tiny run."""

import hashlib
import json
import re

import pytest
from conftest import tiny_config

from resdepth import claims
from resdepth.grid import grid_runs

pytestmark = pytest.mark.workflow

#: Every rule that draws a figure or writes a table results/paper/ copies.
ARTIFACT_SOURCES = (
    "plot_init_norms",
    "plot_accuracy_vs_depth",
    "plot_training_curves",
    "plot_expansion",
    "plot_capacity",
    "plot_transformer",
    "accuracy_table",
)


def digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


#: Where the tiny run keeps each table the claims rule reads, by its input name.
CLAIM_TABLES = {
    "truncation": "results/expansion/truncation.csv",
    "truncation_slopes": "results/expansion/truncation_slopes.csv",
    "truncation_per_input": "results/expansion/truncation_per_input.csv",
    "init_norms": "results/init_norms.csv",
    "runs": "results/runs.csv",
    "data_manifests": ["results/data/digits.json"],
    "capacity_sweep": "results/capacity/gc_vs_lambda.csv",
    "orders": "results/expansion/orders.csv",
    "truncated_accuracy": "results/expansion/truncated_accuracy.csv",
    "truncation_transformer_slopes": "results/expansion/truncation_transformer_slopes.csv",
    "init_norms_transformer": "results/init_norms_transformer.csv",
    "radius_transformer": "results/radius_transformer.csv",
    "test_correct": [
        f"results/runs/{run_id}/test_correct.npy" for run_id in grid_runs(tiny_config())
    ],
}


def test_claims_files_hold_the_checks_of_this_runs_tables(finished):
    """The rule passes each check its own table and the config's thresholds: its verdicts
    are those of the checks recomputed here from the run's result files."""
    document = json.loads(finished.path("results/claims.json").read_text())
    ids = ["C1", "C2", "C3", "C4", "C5", "C1T", "C2T", "C6", "C7"]
    assert [c["id"] for c in document["claims"]] == ids
    assert set(CLAIM_TABLES) == set(claims.TABLE_NAMES)
    paths = {
        name: [finished.path(p) for p in path] if isinstance(path, list) else finished.path(path)
        for name, path in CLAIM_TABLES.items()
    }
    tables = claims.read_tables(paths)
    thresholds = tiny_config()["claims"]
    checks = claims.check_all(tables, thresholds)
    assert document == json.loads(claims.claims_json(checks, thresholds))
    markdown = finished.path("results/claims.md").read_text()
    html = finished.path("results/claims.html").read_text()
    for check in document["claims"]:
        assert f"| {check['id']} | {check['verdict']} |" in markdown
        assert f"<h2>{check['id']}: {check['verdict']}</h2>" in html


def test_paper_folder_holds_byte_copies_of_every_figure_and_table(finished):
    paper = finished.path("results/paper")
    figures = sorted(finished.path("results/figures").iterdir())
    assert figures
    for figure in figures:
        assert (paper / figure.name).read_bytes() == figure.read_bytes()
    for name in ("accuracy.md", "accuracy.tex"):
        assert (paper / name).read_bytes() == finished.path(f"results/tables/{name}").read_bytes()
    assert "<table>" in (paper / "accuracy.html").read_text()


def test_two_builds_of_the_artifacts_give_identical_bytes(finished, tmp_path):
    again = finished.copy_to(tmp_path)
    again.run("--forcerun", *ARTIFACT_SOURCES, "paper", config=tiny_config())
    assert digests(again.path("results/paper")) == digests(finished.path("results/paper"))


def report_results(html):
    """The results embedded in a Snakemake report: {path: record}."""
    match = re.search(r'<script id="results">\s*var results = (.*?);\s*</script>', html, re.S)
    assert match, "no results in the report"
    return json.loads(match.group(1))


def test_report_embeds_every_figure_and_table_with_a_caption(finished, tmp_path):
    report = tmp_path / "report.html"
    finished.run("--report", str(report), config=tiny_config())
    results = report_results(report.read_text())
    figures = [f"results/figures/{p.name}" for p in finished.path("results/figures").glob("*.png")]
    expected = {*figures, "results/claims.html", "results/paper/accuracy.html"}
    assert set(results) == expected
    for path, record in results.items():
        assert record["caption"].startswith("<p>"), f"{path} has no caption"
        assert record["data_uri"].startswith("data:"), f"{path} is not embedded"
    assert "Claim C2" in results["results/figures/init_norms.png"]["caption"]


def report_intro(html):
    """The report's front page (workflow/report/workflow.rst, rendered)."""
    match = re.search(
        r'<script id="workflow-desc">\s*var workflow_desc = (".*?");\s*</script>', html, re.S
    )
    assert match, "no front page in the report"
    return json.loads(match.group(1))


def test_report_intro_names_every_verdict(finished, tmp_path):
    report = tmp_path / "report.html"
    finished.run("--report", str(report), config=tiny_config())
    intro = report_intro(report.read_text())
    for verdict in claims.VERDICTS:
        assert f"<strong>{verdict}</strong>" in intro, verdict


def test_report_refuses_a_config_other_than_the_one_of_its_results(finished, tmp_path):
    """A report over the tiny run's results with config/paper.yaml would describe CIFAR-10
    runs around digits figures: it stops before writing anything, naming what differs."""
    recorded = json.loads(finished.path("results/config.json").read_text())
    assert recorded["config"]["grid"] == tiny_config()["grid"]
    report = tmp_path / "report.html"
    result = finished.run("--configfile", "config/paper.yaml", "--report", str(report), check=False)
    assert result.returncode != 0 and not report.exists()
    message = result.stdout + result.stderr
    assert "results/config.json" in message
    assert "grid.dataset: results have ['digits'], this config has ['cifar10']" in message
