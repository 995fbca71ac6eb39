"""The paper's artifacts, gathered in results/paper/: one folder a paper can include.

Figures and the LaTeX/Markdown accuracy table are byte copies of what the plotting and
aggregation rules write (one source of truth for every figure); the only artifact made
here is the accuracy table as an HTML page, for the Snakemake report.
"""

import shutil
from pathlib import Path

from resdepth import formats

#: How an HTML cell of a seed that diverged looks: the text says "diverged", the shading
#: makes such cells stand out in a large table.
_DIVERGED_STYLE = "background:#f8d7da;font-style:italic"


def copy_artifacts(sources, targets):
    """Copy each source file to the target of the same name, byte for byte."""
    if len(sources) != len(targets):
        raise ValueError(f"{len(sources)} sources for {len(targets)} targets")
    for source, target in zip(sources, targets, strict=True):
        if Path(source).name != Path(target).name:
            raise ValueError(f"{source} would be copied to a different name, {target}")
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)


def html_table(table):
    """An accuracy ``formats.Table`` as a standalone HTML page: its caption, then the
    table. Cells where a seed diverged are shaded; their text already says so."""
    return formats.html_page(
        table.caption,
        [("table", table)],
        cell_style=lambda text: _DIVERGED_STYLE if "diverged" in text else "",
    )
