"""The report's items carry labels to filter by, and the claims page links each verdict's
figure."""

import json
import re

import pytest
from conftest import TINY_CONFIG
from test_report import report_results

from resdepth import claims

pytestmark = pytest.mark.workflow


def test_every_report_item_is_labelled(finished, tmp_path):
    report = tmp_path / "report.html"
    finished.run("--report", str(report), "--configfile", TINY_CONFIG)
    results = report_results(report.read_text())
    for path, record in results.items():
        labels = record["labels"] or {}
        assert labels.get("kind") in ("figure", "table"), path
        assert labels.get("shows"), path
    truncation = results["results/figures/expansion_truncation.png"]["labels"]
    assert truncation["shows"] == "expansion: truncation"  # the wildcard filled in


def test_claims_page_links_the_figure_of_every_measured_verdict(finished):
    verdicts = json.loads(finished.path("results/claims.json").read_text())["claims"]
    measured = [c["id"] for c in verdicts if c["verdict"] != claims.NOT_MEASURED]
    assert measured  # the tiny run measures some claims, not all
    html = finished.path("results/claims.html").read_text()
    links = re.findall(r'<a href="([^"]+)">', html)
    assert links == [claims.FIGURES[claim] for claim in measured]
    for link in links:  # relative to the page, as a browser resolves them
        assert finished.path(f"results/{link}").is_file(), link
    markdown = finished.path("results/claims.md").read_text()
    assert all(f"]({link})" in markdown for link in links)
