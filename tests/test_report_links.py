"""The report's items carry labels to filter by, and the claims page shows each verdict's
figure, inside the report as well as on disk."""

import base64
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


def embedded_images(html):
    """The images a page embeds as data URLs, decoded, in order."""
    sources = re.findall(r'<img src="data:image/png;base64,([^"]+)"', html)
    return [base64.b64decode(source) for source in sources]


def test_claims_page_embeds_the_figure_of_every_measured_verdict(finished):
    verdicts = json.loads(finished.path("results/claims.json").read_text())["claims"]
    measured = [c["id"] for c in verdicts if c["verdict"] != claims.NOT_MEASURED]
    assert measured  # the tiny run measures some claims, not all
    figures = {c.id: c.figure for c in claims.CLAIMS}
    html = finished.path("results/claims.html").read_text()
    expected = [finished.path(f"results/{figures[claim]}").read_bytes() for claim in measured]
    assert embedded_images(html) == expected
    assert not re.findall(r'<a href="', html)  # nothing the report could not open
    markdown = finished.path("results/claims.md").read_text()  # on disk: linked
    assert all(f"]({figures[claim]})" in markdown for claim in measured)


def test_claims_page_figures_show_inside_the_report(finished, tmp_path):
    """The report embeds the page itself as a data URL, where a relative link opens a
    blank pane: every figure must be inside the page the report carries."""
    report = tmp_path / "report.html"
    finished.run("--report", str(report), "--configfile", TINY_CONFIG)
    record = report_results(report.read_text())["results/claims.html"]
    mime, data = record["data_uri"].split(",", 1)
    assert mime == "data:text/html;charset=utf8;base64" or mime.endswith(";base64")
    page = base64.b64decode(data).decode("utf-8")
    verdicts = json.loads(finished.path("results/claims.json").read_text())["claims"]
    measured = [c["id"] for c in verdicts if c["verdict"] != claims.NOT_MEASURED]
    figures = {c.id: c.figure for c in claims.CLAIMS}
    images = embedded_images(page)
    assert images == [finished.path(f"results/{figures[c]}").read_bytes() for c in measured]
    assert all(image.startswith(b"\x89PNG") for image in images)
    assert not re.findall(r'(?:href|src)="(?!data:)', page)  # no link out of the page
