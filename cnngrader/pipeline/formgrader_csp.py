"""A Content-Security-Policy for the formgrader's submission pages, as a Jupyter server extension.

The formgrader shows a student's notebook inside the instructor's Jupyter server, where a script could use
the instructor's session. `sanitize.SafeHTML` cleans the notebook first; this is the second line. Enable it
in the instructor's Jupyter configuration (jupyter_server_config.py):

    c.ServerApp.jpserver_extensions = {"nbgrader": True, "cnngrader.pipeline.formgrader_csp": True}

Each page under `/formgrader/submissions/` then gets a policy that allows script only from the server itself
(nbgrader's static files; 'unsafe-eval' for underscore's templates and MathJax's configuration) and from
MathJax's CDN, plus nbgrader's own inline scripts by their sha256 hashes: those the formgrade template writes
before the notebook (`#notebook-container`). Any inline script inside the notebook, every event handler and
every `javascript:` URL is blocked by the browser.
"""
from __future__ import annotations

import base64
import hashlib
import re

from tornado.web import OutputTransform

MARKER = b'id="notebook-container"'
_INLINE = re.compile(rb"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.DOTALL | re.IGNORECASE)
BASE_POLICY = ("default-src 'self'; script-src 'self' 'unsafe-eval' https://cdnjs.cloudflare.com {hashes}; "
               "style-src 'self' 'unsafe-inline' https://cdnjs.cloudflare.com; img-src 'self' data:; "
               "font-src 'self' data: https://cdnjs.cloudflare.com; object-src 'none'; frame-src 'none'; "
               "base-uri 'none'; form-action 'self'; frame-ancestors 'self'")


def policy(page: bytes) -> str:
    """The policy of a formgrade page: nbgrader's inline scripts (before the notebook) by hash."""
    head = page.split(MARKER, 1)[0] if MARKER in page else b""
    hashes = sorted({"'sha256-" + base64.b64encode(hashlib.sha256(m.group(1)).digest()).decode() + "'"
                     for m in _INLINE.finditer(head)})
    return BASE_POLICY.format(hashes=" ".join(hashes)).replace("  ", " ")


class FormgradeCSP(OutputTransform):
    """Adds `policy(page)` to the formgrader's submission pages (one chunk: the handler writes the page whole)."""

    def __init__(self, request) -> None:
        super().__init__(request)
        self._formgrade = "/formgrader/submissions/" in request.path

    def transform_first_chunk(self, status_code, headers, chunk, finishing):
        if self._formgrade and headers.get("Content-Type", "").startswith("text/html"):
            headers["Content-Security-Policy"] = policy(chunk if finishing else b"")
        return status_code, headers, chunk


def _load_jupyter_server_extension(serverapp) -> None:
    serverapp.web_app.add_transform(FormgradeCSP)
    serverapp.log.info("cnngrader: a Content-Security-Policy on the formgrader's submission pages")
