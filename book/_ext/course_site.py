"""Sphinx extension: the course book as readers get it.

- Links: the repository URL (`repository.url` in _config.yml) and the JupyterHub URL
  (`launch_buttons.jupyterhub_url`) are set in _config.yml only. A button that needs one of them is
  shown only when it is set: with no repository there is no repository, issues, Binder or Colab
  button, and with no JupyterHub no JupyterHub button.
- Maths offline: MathJax 3 is served from the built site (`_static/mathjax`), copied from the
  PyPI package `sphinx-mathjax-offline` (which bundles it). Sphinx adds the script only to pages
  that have maths.
- The duplicated sphinx-thebe configuration script (it declares `const THEBE_JS_URL` twice, a JS
  error on every page) is kept once, and MathJax is left off pages without maths.
- `static/course.css`: phone layout (long inline code wraps, wide equations scroll).
- Images whose alt text is missing or a file path (myst-nb's default for cell outputs) get a
  description instead: the cell's own `mystnb.image.alt` metadata wins where a chapter sets it.
"""
from __future__ import annotations

import re
import shutil
from importlib import metadata
from pathlib import Path

from docutils import nodes

STATIC = Path(__file__).parent / "static"
MATHJAX_PACKAGE = "sphinx-mathjax-offline"
# What tex-chtml.js loads: itself, its fonts, the TeX extensions it may autoload, and the menu's parts.
MATHJAX_PARTS = ("tex-chtml.js", "output/chtml", "input/tex/extensions", "ui", "a11y", "adaptors")
LINK_BUTTONS_NEEDING_A_REPOSITORY = ("use_repository_button", "use_issues_button", "use_edit_page_button")


def mathjax_dir() -> Path:
    """The folder of MathJax's files inside the installed sphinx-mathjax-offline package."""
    try:
        files = metadata.files(MATHJAX_PACKAGE) or []
    except metadata.PackageNotFoundError as e:
        raise RuntimeError(f"{MATHJAX_PACKAGE} is not installed (it is in requirements.txt)") from e
    for f in files:
        if f.name == "tex-chtml.js" and f.parent.name == "mathjax":
            return Path(f.locate()).parent
    raise RuntimeError(f"{MATHJAX_PACKAGE} holds no mathjax/tex-chtml.js")


def configure(app, config):
    options = config.html_theme_options
    repo = (options.get("repository_url") or "").strip()
    launch = dict(options.get("launch_buttons") or {})
    if repo:
        options["use_repository_button"] = options["use_issues_button"] = True
    else:
        for key in LINK_BUTTONS_NEEDING_A_REPOSITORY:
            options[key] = False
        for key in ("binderhub_url", "colab_url", "jupyterhub_url", "deepnote_url"):
            launch.pop(key, None)
        options.pop("repository_url", None)
    if not (launch.get("jupyterhub_url") or "").strip():
        launch.pop("jupyterhub_url", None)
    options["launch_buttons"] = launch
    config.mathjax_path = "mathjax/tex-chtml.js"
    config.html_static_path = list(config.html_static_path) + [str(STATIC)]


def page_has_maths(app, pagename) -> bool:
    # Not MathDomain.has_equations(pagename): that also counts the pages under the page's toctree,
    # so the intro, whose toctree holds every chapter, would count as a page with maths.
    return bool(app.env.get_domain("math").data.get("has_equations", {}).get(pagename, False))


def tidy_scripts(app, pagename, templatename, context, doctree):
    """Keep each script once, and MathJax (its configuration and loader) only on pages with maths.

    myst-nb asks Sphinx to put every asset on every page ("always" policy), MathJax included."""
    maths = page_has_maths(app, pagename)
    seen, kept = set(), []
    for script in context.get("script_files", []):
        filename = str(getattr(script, "filename", script) or "")
        body = getattr(script, "attributes", {}).get("body", "")
        if not maths and ("mathjax" in filename.lower() or "window.MathJax" in body):
            continue
        if (filename, body) in seen:
            continue
        seen.add((filename, body))
        kept.append(script)
    context["script_files"] = kept


def offer_executed_notebook(app, pagename, templatename, context, doctree):
    """Let the download button offer a chapter's executed notebook (.ipynb) even without launch
    buttons: sphinx-book-theme copies it into _sources only while it builds those."""
    if context.get("ipynb_source") or not str(context.get("sourcename", "")).endswith((".md", ".md.txt")):
        return
    executed = Path(app.outdir).parent / "jupyter_execute" / f"{pagename}.ipynb"
    if not executed.is_file():
        return
    target = Path(app.outdir) / "_sources" / f"{pagename}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(executed, target)
    context["ipynb_source"] = f"{pagename}.ipynb"


def is_path_like(alt: str) -> bool:
    return not alt.strip() or bool(re.search(r"[/\\]|\.(png|jpe?g|svg|gif)$", alt.strip(), flags=re.I))


def describe_images(app, doctree, docname):
    title = app.env.titles[docname].astext() if docname in app.env.titles else docname
    count = 0
    for image in doctree.findall(nodes.image):
        count += 1
        if is_path_like(image.get("alt", "")):
            image["alt"] = f"Figure {count} of the page '{title}', drawn by the code above it"


def copy_mathjax(app, exc):
    if exc is not None or app.builder.format != "html":
        return
    source, target = mathjax_dir(), Path(app.outdir) / "_static" / "mathjax"
    for part in MATHJAX_PARTS:
        src, dst = source / part, target / part
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)


def setup(app):
    app.connect("config-inited", configure)
    app.connect("html-page-context", offer_executed_notebook, priority=499)
    app.connect("html-page-context", tidy_scripts, priority=900)
    app.connect("doctree-resolved", describe_images)
    app.connect("build-finished", copy_mathjax)
    app.add_css_file("course.css")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
