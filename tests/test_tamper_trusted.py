"""Attacks around the sandbox, graded through the real pipeline (`grade_course`, sandboxed kernels),
each with its fair score: links and special files in a submission, files that cost the grader and not
the sandbox, an output message too big to decode, student ids that are spreadsheet formulas, and
student HTML and script in the feedback and formgrader pages (opened in Chromium).

The fair score of a correct notebook that also attacks is full marks: the attack changes nothing. A
submission over the size limits is not graded, with one line that says why."""
from __future__ import annotations

import csv
import importlib.util
import io
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
from bs4 import BeautifulSoup
from conftest import REPO
from fairtable import record
from nbtools import total, with_new_cell, write_submissions
from traitlets.config import Config

from cnngrader.course import load_course
from cnngrader.pipeline.grade import course_config, generate, grade_course, solution_submission
from cnngrader.pipeline.kernel_start import stop_zygote
from cnngrader.pipeline.report import gradebook_rows
from cnngrader.pipeline.sandbox import SandboxUnavailable, check_available

try:
    check_available()
except SandboxUnavailable as e:  # pragma: no cover - CI installs bubblewrap
    pytestmark = pytest.mark.skip(reason=f"the sandbox is unavailable: {e}")
else:
    pytestmark = pytest.mark.slow

A2 = "02_cross_correlation"
SECRET = "CNNSECRET-root-only"
FORMULA_ID = '=HYPERLINK("evil.example","click")'
TRAPS_MD = """# My notes

<img src="x" onerror="window.__pwned = 'img'"> <script>window.__pwned = 'script'</script>
[click](javascript:window.__pwned='link') <a href="javascript:window.__pwned='a'">a</a>
<svg onload="window.__pwned='svg'"></svg> <iframe src="javascript:window.__pwned='iframe'"></iframe>
"""
TRAPS_CODE = """from IPython.display import HTML, Javascript, Markdown, display
display(HTML('<b>bold</b><img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'))
display(Javascript('window.__pwned = 3'))
display(Markdown('[m](javascript:window.__pwned=4)'))
"""
HUGE_MESSAGE = "print('x' * (100 * 2**20))  # one 100 MiB stream message\n"


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("trusted")
    generate([A2], root, release_directory=root / "release")
    sol = solution_submission(A2, root / "release", load_course(REPO))
    traps = with_new_cell(sol, TRAPS_CODE, after="corr2d")
    traps.cells.insert(1, nbformat.v4.new_markdown_cell(TRAPS_MD))
    subs = {"victim": sol, "links": sol, "sparse": sol, "many_files": sol, "traps": traps, "-dash": sol,
            FORMULA_ID: sol, "huge_message": with_new_cell(sol, HUGE_MESSAGE, after="corr2d")}
    write_submissions(root, {sid: {A2: nb} for sid, nb in subs.items()})
    folder = root / "submitted"
    outside = root / "outside"
    outside.mkdir()
    (outside / "shadow").write_text(SECRET)
    (outside / "shadow").chmod(0o600)
    links = folder / "links" / A2
    (links / "data.txt").symlink_to(outside / "shadow")
    (links / "zero.bin").symlink_to("/dev/zero")
    os.mkfifo(links / "pipe")
    os.link(outside / "shadow", links / "hard.txt")
    with open(folder / "sparse" / A2 / "big.bin", "wb") as fh:
        fh.truncate(1200 * 2**20)  # 1.2 GiB of apparent size, no blocks
    for i in range(150):
        (folder / "many_files" / A2 / f"f{i:04d}.txt").write_text("x")
    c = Config()
    c.Execute.timeout = 30
    c.GradingExecute.max_memory_mb = 2048
    c.GradingExecute.secret = 7
    try:
        result = grade_course(root, jobs=2, config=c)
    finally:
        stop_zygote()
    rows = gradebook_rows(course_config(root))
    yield SimpleNamespace(root=root, result=result, rows=rows)


def score(batch, student: str) -> float | None:
    got = [r["score"] for r in batch.rows if r["student"] == student]
    return sum(got) if got else None


FIXTURES = {  # student -> (the fairness item it is a fixture of, what it is), for tests/fairtable.py
    "victim": ("6", "a correct notebook graded beside the attacks"),
    "links": ("6", "symlinks to a 0600 file and to /dev/zero, a FIFO, a hard link to an outside file"),
    "traps": ("5", "<script>, onerror, javascript: links in markdown and outputs"),
    "-dash": ("8", "student id -dash"),
    "huge_message": ("6", "one 100 MiB output message"),
    "sparse": ("6", "1.2 GiB sparse file (0 blocks)"),
    "many_files": ("6", "150 tiny files"),
    FORMULA_ID: ("8", "student id =HYPERLINK(...)"),
}


@pytest.mark.parametrize("student", ["victim", "links", "traps", "-dash", "huge_message"])
def test_fair_full_marks(batch, student):
    item, what = FIXTURES[student]
    record(item, f"{what} ({A2}, score)", total(A2), score(batch, student), "test_tamper_trusted.py")
    assert score(batch, student) == total(A2), (student, batch.result.failures)


def test_links_are_not_followed_and_reach_no_feedback(batch):
    for where in ("autograded", "feedback"):
        folder = batch.root / where / "links" / A2
        names = {p.name for p in folder.iterdir()}
        assert not names & {"data.txt", "zero.bin", "pipe", "hard.txt"}, (where, names)
        assert not any(p.is_symlink() for p in folder.iterdir())
    for page in (batch.root / "feedback").rglob("*.html"):
        assert SECRET not in page.read_text()


@pytest.mark.parametrize("student, why", [("sparse", "more than 128 MiB"), ("many_files", "more than 100 files"),
                                          (FORMULA_ID, "outside A-Z")])
def test_refused_with_one_line(batch, student, why):
    lines = [f for f in batch.result.failures if why in f]
    item, what = FIXTURES[student]
    measured = f"{'not graded' if score(batch, student) is None else score(batch, student)}, {len(lines)} line(s)"
    record(item, f"{what} ({A2})", "not graded, 1 line(s)", measured, "test_tamper_trusted.py")
    assert len(lines) == 1 and "not graded" in lines[0], batch.result.failures
    assert score(batch, student) is None


def test_exports_carry_no_formula(batch):
    rows = list(csv.DictReader(io.StringIO((batch.root / "grades.csv").read_text())))
    ids = {r["student_id"] for r in rows}
    assert "'-dash" in ids and not any(i.startswith(("=", "-", "+", "@")) for i in ids)
    for path in (batch.root / "reports").glob("*.csv"):
        for row in csv.reader(io.StringIO(path.read_text())):
            assert not any(cell.startswith(("=", "+", "@", "\t", "\r")) for cell in row), (path.name, row)
            assert not any(cell.startswith("-") and not cell.replace(".", "").lstrip("-").isdigit()
                           for cell in row), (path.name, row)


def test_feedback_html_has_no_script(batch):
    page = (batch.root / "feedback" / "traps" / A2 / f"{A2}.html").read_text()
    head, body = page.split("<body", 1)  # the head holds nbgrader's own MathJax
    assert "<b>bold</b>" in body and "My notes" in body  # harmless HTML stays
    soup = BeautifulSoup("<body" + body, "html.parser")
    assert soup.find_all(["script", "iframe", "svg", "object", "embed"]) == []
    for tag in soup.find_all(True):
        assert not [a for a in tag.attrs if a.lower().startswith("on")], tag
        for attr in ("href", "src"):
            assert not str(tag.get(attr, "")).strip().lower().startswith("javascript:"), tag
    csp = head.split('http-equiv="Content-Security-Policy" content="', 1)[1].split('"', 1)[0]
    assert "script-src https://cdnjs.cloudflare.com;" in csp and "unsafe" not in csp.split("style-src")[0]


# -- in a browser -------------------------------------------------------------------------------------
CHROMIUM = os.environ.get("CNNLIB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
needs_browser = pytest.mark.skipif(importlib.util.find_spec("playwright") is None or not Path(CHROMIUM).is_file(),
                                   reason="playwright or Chromium is missing")


def formgrade_page(batch, sanitised: bool = True) -> Path:
    """The page the formgrader shows for the traps submission, rendered as the formgrader renders it:
    nbconvert's HTMLExporter with the course's configuration and nbgrader's formgrade template
    (sanitised=False: without the course's cleaning, to test the Content-Security-Policy alone)."""
    from nbconvert.exporters import HTMLExporter
    from nbgrader.server_extensions.formgrader import handlers

    cfg = course_config(batch.root)
    if not sanitised:
        cfg.HTMLExporter.preprocessors = []
    cfg.HTMLExporter.template_name = "formgrade"
    cfg.HTMLExporter.extra_template_basedirs = [handlers.template_path]
    exporter = HTMLExporter(config=cfg)
    resources = {"assignment_id": A2, "notebook_id": A2, "submission_id": "x", "index": 0, "total": 1,
                 "base_url": "", "student": "traps", "last_name": "", "first_name": "", "notebook_path": ""}
    html, _ = exporter.from_filename(str(batch.root / "autograded" / "traps" / A2 / f"{A2}.ipynb"),
                                     resources=resources)
    path = batch.root / ("formgrade.html" if sanitised else "formgrade-raw.html")
    path.write_text(html)
    return path


@needs_browser
def test_no_student_script_runs_in_the_browser(batch):
    from playwright.sync_api import sync_playwright

    pages = {"feedback": batch.root / "feedback" / "traps" / A2 / f"{A2}.html", "formgrader": formgrade_page(batch)}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            for name, path in pages.items():
                page = browser.new_page()
                page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
                           else route.abort())
                page.goto(path.as_uri())
                for link in page.query_selector_all("a"):
                    href = link.get_attribute("href") or ""
                    assert not href.strip().lower().startswith("javascript:"), (name, href)
                page.wait_for_timeout(500)
                ran = page.evaluate("window.__pwned === undefined ? 'no script ran' : 'script ran: ' + window.__pwned")
                record("5", f"the traps notebook's {name} page in Chromium", "no script ran", ran,
                       "test_tamper_trusted.py")
                assert page.evaluate("window.__pwned === undefined"), (name, page.evaluate("window.__pwned"))
                assert page.locator("text=My notes").count() >= 1, name
                page.close()
        finally:
            browser.close()


@needs_browser
def test_the_formgrader_policy_blocks_student_script_by_itself(batch):
    """The second line alone: the formgrade page rendered WITHOUT the cleaning, served with the policy of
    cnngrader.pipeline.formgrader_csp. nbgrader's own inline script runs; none of the student's does."""
    from playwright.sync_api import sync_playwright

    from cnngrader.pipeline.formgrader_csp import policy

    html = formgrade_page(batch, sanitised=False).read_bytes()
    assert b"window.__pwned" in html.split(b'id="notebook-container"', 1)[1]  # the traps are in the page
    url = "http://formgrader.test/formgrader/submissions/x"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.route("**/*", lambda route: route.fulfill(
                status=200, body=html, headers={"Content-Type": "text/html", "Content-Security-Policy": policy(html)})
                if route.request.url == url else route.abort())
            page.goto(url)
            page.wait_for_timeout(500)
            assert page.evaluate("window.submission_id") == "x"  # nbgrader's inline script, allowed by its hash
            assert page.evaluate("window.__pwned === undefined"), page.evaluate("window.__pwned")
        finally:
            browser.close()
