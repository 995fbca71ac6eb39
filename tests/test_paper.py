"""The paper's artifacts: byte copies, and the accuracy table as HTML."""

import pytest

from resdepth import formats, paper


def test_copy_artifacts_copies_bytes_to_the_same_names(tmp_path):
    sources = [tmp_path / "figures" / "a.pdf", tmp_path / "tables" / "b.tex"]
    for i, source in enumerate(sources):
        source.parent.mkdir(exist_ok=True)
        source.write_bytes(bytes([i, 255, 0]))
    targets = [tmp_path / "paper" / "a.pdf", tmp_path / "paper" / "b.tex"]
    paper.copy_artifacts(sources, targets)
    for source, target in zip(sources, targets, strict=True):
        assert target.read_bytes() == source.read_bytes()


def test_copy_artifacts_refuses_to_rename_or_drop(tmp_path):
    source = tmp_path / "a.pdf"
    source.write_bytes(b"%PDF")
    with pytest.raises(ValueError, match="different name"):
        paper.copy_artifacts([source], [tmp_path / "paper" / "b.pdf"])
    with pytest.raises(ValueError, match="1 sources for 2 targets"):
        paper.copy_artifacts([source], [tmp_path / "p" / "a.pdf", tmp_path / "q" / "a.pdf"])


def test_html_table_marks_diverged_cells_and_escapes_text():
    table = formats.Table(
        caption="Test accuracy (%) <digits>",
        header=["scaling", "n=4", "n=64"],
        rows=[
            ["λ=1", "97.0 ± 0.1 (1/2 diverged)", "diverged"],
            ["λ=1/√n", "96.8 ± 0.2", "95.0 ± 0.5"],
        ],
        n_keys=1,
    )
    page = paper.html_table(table)
    assert page.count("background:#f8d7da") == 2  # the two cells with a diverged seed
    assert "<p>Test accuracy (%) &lt;digits&gt;</p>" in page
    assert '<td style="text-align:left">λ=1/√n</td>' in page
    assert '<td style="text-align:right">95.0 ± 0.5</td>' in page
    assert page.count("<tr>") == 3
