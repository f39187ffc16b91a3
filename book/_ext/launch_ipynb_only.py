"""Sphinx extension: keep the Colab launch button only on pages whose source is an .ipynb.

Binder and JupyterHub open the chapters' MyST Markdown (.md) files as notebooks through
jupytext, but Colab opens only .ipynb files, so on a chapter page its button would lead to
an error. The exercises are .ipynb files and keep the button.
"""
from pathlib import Path

NOT_FOR_TEXT_NOTEBOOKS = {"Colab"}


def drop_colab_on_text_notebooks(app, pagename, templatename, context, doctree):
    if Path(app.env.doc2path(pagename)).suffix == ".ipynb":
        return
    for group in context.get("header_buttons", []):
        if group.get("label") == "launch-buttons":
            group["buttons"] = [b for b in group["buttons"] if b.get("text") not in NOT_FOR_TEXT_NOTEBOOKS]


def setup(app):
    # sphinx-book-theme adds the launch buttons at priority 501; run after it.
    app.connect("html-page-context", drop_colab_on_text_notebooks, priority=510)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
