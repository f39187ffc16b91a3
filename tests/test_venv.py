"""What make's set-up leaves in .venv beyond requirements.txt."""
from __future__ import annotations

import subprocess
import sys


def test_nbformat_imports_without_the_iri_checker_that_compiles_parsers():
    # jsonschema imports rfc3987-syntax when it is there, which compiles its grammar then: 1.1 s in every
    # process that reads a notebook (the grader, each worker, the book's build). make removes it.
    code = "import sys, nbformat; nbformat.validate(nbformat.v4.new_notebook()); print('rfc3987_syntax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False", out.stderr
