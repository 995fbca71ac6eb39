"""The text formats the results are written in, once: Markdown, LaTeX and HTML tables,
and pages (Markdown or standalone HTML) made of a few kinds of blocks. The accuracy
table (``aggregate``), the paper's folder (``paper``) and the claims check (``claims``)
all write through here.

A page is a list of blocks, each a tuple whose first item says its kind:
``("title", text)``, ``("heading", text)``, ``("paragraph", label, text)`` (``label``
may be empty), ``("figure", label, path, data)`` (``data``: the image's bytes to embed
in HTML, or None to link ``path``) and ``("table", Table)``.
"""

import base64
from dataclasses import dataclass
from html import escape
from pathlib import Path


@dataclass
class Table:
    """A table of strings: ``n_keys`` leading text columns, then value columns (right
    aligned); the caption says what it holds (empty: none)."""

    caption: str
    header: list
    rows: list
    n_keys: int


def markdown_table(table):
    """A GitHub-flavoured Markdown table with the caption as a paragraph above it."""

    def line(cells):
        return "| " + " | ".join(c.replace("|", r"\|") for c in cells) + " |"

    align = ["---"] * table.n_keys + ["--:"] * (len(table.header) - table.n_keys)
    caption = [table.caption, ""] if table.caption else []
    lines = [*caption, line(table.header), line(align), *map(line, table.rows)]
    return "\n".join(lines) + "\n"


#: LaTeX replacements for characters that are special in text mode or not ASCII.
_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "λ": r"\ensuremath{\lambda}",
    "√": r"\ensuremath{\surd}",
    "±": r"\ensuremath{\pm}",
}


def latex_escape(text):
    """Escape text for a LaTeX document; a non-ASCII character without a rule is an error."""
    out = []
    for char in text:
        if char in _LATEX_ESCAPES:
            out.append(_LATEX_ESCAPES[char])
        elif char.isascii():
            out.append(char)
        else:
            raise ValueError(f"no LaTeX escape for {char!r} in {text!r}")
    return "".join(out)


def latex_table(table):
    """A booktabs ``tabular`` (no float: the document adds its own caption).

    The caption is kept as a comment line so the file says what it holds.
    """
    spec = "l" * table.n_keys + "r" * (len(table.header) - table.n_keys)

    def line(cells):
        return " & ".join(latex_escape(c) for c in cells) + r" \\"

    return (
        "\n".join(
            [
                "% " + latex_escape(table.caption),
                rf"\begin{{tabular}}{{{spec}}}",
                r"\toprule",
                line(table.header),
                r"\midrule",
                *map(line, table.rows),
                r"\bottomrule",
                r"\end{tabular}",
            ]
        )
        + "\n"
    )


def markdown_page(blocks):
    """A page of blocks as Markdown (figures as links to their path)."""
    lines = []
    for kind, *content in blocks:
        if kind == "title":
            lines += [f"# {content[0]}", ""]
        elif kind == "heading":
            lines += [f"## {content[0]}", ""]
        elif kind == "figure":
            label, path, _ = content
            lines += [f"*{label}* [{path}]({path})", ""]
        elif kind == "paragraph":
            label, text = content
            lines += [f"*{label}* {text}" if label else text, ""]
        else:
            lines += [markdown_table(content[0]), ""]
    return "\n".join(lines)


def _html_table(table, cell_style):
    """A table element; ``cell_style(text)`` adds CSS to a data cell (e.g. a colour)."""

    def cell(tag, text, index):
        style = "text-align:right" if index >= table.n_keys else "text-align:left"
        extra = cell_style(text) if tag == "td" else ""
        style += f";{extra}" if extra else ""
        return f'<{tag} style="{style}">{escape(text)}</{tag}>'

    def row(tag, cells):
        return "<tr>" + "".join(cell(tag, c, i) for i, c in enumerate(cells)) + "</tr>"

    caption = [f"<p>{escape(table.caption)}</p>"] if table.caption else []
    return "\n".join(
        [*caption, "<table>", row("th", table.header), *(row("td", r) for r in table.rows)]
        + ["</table>"]
    )


def html_figure(label, path, data):
    """A figure block: the image embedded as a data URL when ``data`` is given (the page
    then stands alone: inside the Snakemake report, which embeds the page itself as a
    data URL, a relative link would open nothing), else a link to ``path``."""
    if data is None:
        return f'<p><em>{escape(label)}</em> <a href="{escape(path)}">{escape(path)}</a></p>'
    mime = {".png": "image/png", ".svg": "image/svg+xml"}[Path(path).suffix]
    source = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    return (
        f'<figure><img src="{source}" alt="{escape(path)}" style="max-width:100%">'
        f"<figcaption><em>{escape(label)}</em> {escape(path)}</figcaption></figure>"
    )


def html_page(title, blocks, cell_style=lambda text: ""):
    """A page of blocks as a standalone HTML document."""
    parts = []
    for kind, *content in blocks:
        if kind == "title":
            parts.append(f"<h1>{escape(content[0])}</h1>")
        elif kind == "heading":
            parts.append(f"<h2>{escape(content[0])}</h2>")
        elif kind == "figure":
            parts.append(html_figure(*content))
        elif kind == "paragraph":
            label, text = content
            label = f"<em>{escape(label)}</em> " if label else ""
            parts.append(f"<p>{label}{escape(text)}</p>")
        else:
            parts.append(_html_table(content[0], cell_style))
    style = (
        "body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}"
        "table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:.3em .6em;vertical-align:top}"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{style}</style></head>\n<body>\n"
        + "\n".join(parts)
        + "\n</body>\n</html>\n"
    )
