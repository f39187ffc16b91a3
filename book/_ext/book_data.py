"""Sphinx extension: a chapter that loads a dataset runs again when the data it would load changes.

jupyter-cache keys a chapter's outputs on its code alone, so a chapter that ran on the bundled digits
would still be served from the cache after Fashion-MNIST is installed. cnnlib's loaders print a
source line (cnnlib.data.SOURCE_LINE) that names what they read and its fingerprint: the path of each
file and the checksums it was verified against, or, for a fallback, what was missing
(cnnlib.data.data_fingerprint). Each chapter's cached outputs keep that line.

- Before Sphinx reads the pages (`env-get-outdated`), every cached notebook whose source line holds
  another fingerprint than cnnlib.data.data_source() gives now is removed from the cache, and its
  page is read again: those chapters, and only those, execute again. Finding the data verifies the
  four files (their MD5s) and downloads nothing. It is done from the chapter's folder, where its
  kernel runs, so that a relative $CNNLIB_DATA means the same folder to both.
- After the build, one line per chapter that loaded data says what it used, and a NOTICE follows
  when one fell back to the bundled digits. They are logged and written to <build>/datasets.txt,
  which `make book` prints last.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import nbformat
from jupyter_cache import get_cache
from sphinx.util import logging

from cnnlib import data

logger = logging.getLogger(__name__)
REPORT = "datasets.txt"


def source_lines(nb) -> list[tuple[str, str]]:
    """(what, fingerprint) of each source line in a notebook's stream outputs, in order."""
    found = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                text = output.get("text", "")
                text = "".join(text) if isinstance(text, list) else text
                found += [(m["what"], m["fingerprint"]) for m in data.SOURCE_LINE.finditer(text)]
    return found


def drop_stale_chapters(app, env, added, changed, removed) -> list[str]:
    """Remove from jupyter-cache the notebooks that loaded other data than they would now; return their pages."""
    config = env.mystnb_config
    if config.execution_mode != "cache":
        return []
    cache = get_cache(config.execution_cache_path)
    now: dict[Path, tuple[str, str]] = {}  # chapter folder -> data_source() there
    stale = []
    for record in cache.list_cache_records():
        used = {fingerprint for _, fingerprint in source_lines(cache.get_cache_bundle(record.pk).nb)}
        if not used:
            continue
        folder = Path(record.uri).parent
        if folder not in now:
            with contextlib.chdir(folder if folder.is_dir() else "."):
                now[folder] = data.data_source()
        if used != {now[folder][1]}:
            cache.remove_cache(record.pk)
            stale.append(record.uri)
    docs = sorted({env.path2doc(uri) for uri in stale} - {None})
    if stale:
        what = "; ".join(dict.fromkeys(what for what, _ in now.values()))
        logger.info(f"data now: {what}; executing again, since they loaded other data: {', '.join(docs) or stale}")
    return docs


def report(app, exception) -> None:
    """Log and write what each chapter that loaded data used, then a notice for the digits fallback."""
    if exception is not None or app.builder.format != "html":
        return
    executed = Path(app.env.mystnb_config.output_folder)
    lines, fell_back = [], []
    for doc in sorted(app.env.found_docs):
        notebook = executed / f"{doc}.ipynb"
        if not notebook.is_file():
            continue
        for what in dict.fromkeys(what for what, _ in source_lines(nbformat.read(notebook, as_version=4))):
            lines.append(f"{doc} used {what}")
            if what == data.DIGITS_FALLBACK:
                fell_back.append(doc)
    if fell_back:
        lines.append(
            f"NOTICE: {', '.join(fell_back)} fell back to the bundled digits. Install Fashion-MNIST "
            "(apt-get install dataset-fashion-mnist, or its four files in $CNNLIB_DATA) and build again: "
            "those chapters then run again on it."
        )
    for line in lines:
        logger.info(line)
    Path(app.outdir).parent.joinpath(REPORT).write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def setup(app):
    app.connect("env-get-outdated", drop_stale_chapters)
    app.connect("build-finished", report)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
