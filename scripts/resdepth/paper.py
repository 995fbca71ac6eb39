"""The paper's artifacts, gathered in results/paper/: one folder a paper can include.

Figures and the LaTeX/Markdown accuracy table are byte copies of what the plotting and
aggregation rules write (one source of truth for every figure); the only artifact made
here is the accuracy table as an HTML page, for the Snakemake report.
"""

import shutil
from html import escape
from pathlib import Path

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
    """An ``aggregate.Table`` as a standalone HTML page: its caption, then the table.

    Cells where a seed diverged are shaded; their text already says so.
    """

    def cell(tag, text, numeric):
        style = "text-align:right" if numeric else "text-align:left"
        if "diverged" in text:
            style += ";" + _DIVERGED_STYLE
        return f'<{tag} style="{style}">{escape(text)}</{tag}>'

    def row(tag, cells):
        return (
            "<tr>" + "".join(cell(tag, c, i >= table.n_keys) for i, c in enumerate(cells)) + "</tr>"
        )

    style = (
        "body{font-family:sans-serif;margin:2em}"
        "table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.3em .6em}"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8">'
        f"<title>{escape(table.caption)}</title><style>{style}</style></head>\n<body>\n"
        f"<p>{escape(table.caption)}</p>\n<table>\n"
        + row("th", table.header)
        + "\n"
        + "\n".join(row("td", r) for r in table.rows)
        + "\n</table>\n</body>\n</html>\n"
    )
