"""Nothing a student wrote runs in a browser: the HTML of the feedback pages and of the formgrader.

nbgrader renders a student's notebook as HTML twice: the feedback page the student gets back, and
the formgrader page the instructor grades in (with the instructor's Jupyter session). Both come from
nbconvert's HTMLExporter, and nbgrader's templates render markdown cells and HTML outputs as they
are, so `<script>`, `<img onerror=...>` and `[link](javascript:...)` would run there.

`SafeHTML` (c.HTMLExporter.preprocessors in nbgrader_config.py, so both pages get it) cleans every
notebook before it is rendered, with bleach (the sanitiser nbconvert itself depends on):

- markdown cells are rendered to HTML first (a `javascript:` link is markdown, not a tag) and the
  HTML is cleaned; the cell keeps its type, so nbgrader still shows it as a graded cell;
- text/html and text/markdown outputs are cleaned the same way; outputs that are script
  (application/javascript, widget views) are dropped; raw cells are cleaned;
- what survives: ordinary tags (headings, tables, lists, links, images, code), no event handler, no
  `style`, only http(s), mailto and relative links and data: images; the rest is escaped, so the
  instructor still sees it as text.

Each feedback page also carries a Content-Security-Policy under which no inline script, event
handler or `javascript:` URL runs (`CSP`, added by `add_csp`; the only script allowed is MathJax from
its CDN, which nbgrader's page loads), the second line behind this.
"""
from __future__ import annotations

import re

import bleach
from nbconvert.filters import markdown2html
from nbconvert.preprocessors import Preprocessor

TAGS = frozenset({
    "a", "abbr", "b", "blockquote", "br", "caption", "code", "col", "colgroup", "dd", "del", "details", "div",
    "dl", "dt", "em", "figcaption", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd",
    "li", "ol", "p", "pre", "q", "s", "samp", "small", "span", "strong", "sub", "summary", "sup", "table",
    "tbody", "td", "tfoot", "th", "thead", "tr", "tt", "u", "ul", "var",
})
ATTRIBUTES = {
    "*": ["class", "id", "title", "align", "colspan", "rowspan", "lang", "dir"],
    "a": ["href", "name"],
    "img": ["src", "alt", "width", "height"],
}
PROTOCOLS = frozenset({"http", "https", "mailto", "data"})
SCRIPT_OUTPUTS = ("application/javascript", "text/javascript", "application/vnd.jupyter.widget-view+json")
# A data: URL is an image or nothing (a data:text/html link would open a page of the student's).
_DATA_URL = re.compile(r"\s*data:(?!image/(?:png|jpeg|gif|webp);)", re.IGNORECASE)

# No inline script, event handler or javascript: URL runs (no 'unsafe-inline'), and script comes only
# from the CDN nbgrader's feedback page loads MathJax from (formulas render where it is reachable); styles
# are inline, images data: URLs; no plugin, frame, form or <base>.
CSP = ("default-src 'none'; script-src https://cdnjs.cloudflare.com; style-src 'unsafe-inline'; "
       "img-src data:; font-src data: https://cdnjs.cloudflare.com; object-src 'none'; frame-src 'none'; "
       "base-uri 'none'; form-action 'none'")
CSP_META = f'<meta http-equiv="Content-Security-Policy" content="{CSP}" id="cnngrader-csp">'

_cleaner = bleach.Cleaner(tags=TAGS, attributes=ATTRIBUTES, protocols=PROTOCOLS, strip=False, strip_comments=True)


def clean_html(html: str) -> str:
    """html with only the tags, attributes and URLs above; anything else escaped to text."""
    cleaned = _cleaner.clean(html)
    return re.sub(r'(href|src)="(' + _DATA_URL.pattern + r'[^"]*)"', r'\1="#"', cleaned, flags=re.IGNORECASE)


def clean_markdown(source: str) -> str:
    """A markdown cell's source as cleaned HTML, in a form markdown passes through unchanged: one
    HTML block without blank lines (a blank line would end it)."""
    html = clean_html(markdown2html(source))
    return "<div>\n" + re.sub(r"\n\s*\n", "\n&#8203;\n", html).strip() + "\n</div>"


class SafeHTML(Preprocessor):
    """Clean every cell a student could put HTML in, before an HTML exporter renders the notebook."""

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "markdown":
            cell.source = clean_markdown(cell.source)
        elif cell.cell_type == "raw":
            cell.source = clean_html(cell.source)
        elif cell.cell_type == "code":
            for output in cell.get("outputs", []):
                data = output.get("data")
                if not data:
                    continue
                for key in [k for k in data if k in SCRIPT_OUTPUTS]:
                    del data[key]
                if "text/markdown" in data:
                    data["text/html"] = clean_html(markdown2html(data.pop("text/markdown")))
                if "text/html" in data:
                    value = data["text/html"]
                    data["text/html"] = clean_html("".join(value) if isinstance(value, list) else value)
        return cell, resources


def add_csp(html: str) -> str:
    """A rendered page with CSP_META first in its <head> (unchanged if it has it, or has no head)."""
    if 'id="cnngrader-csp"' in html or "<head>" not in html:
        return html
    return html.replace("<head>", "<head>\n" + CSP_META, 1)
