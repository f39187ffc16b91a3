"""The README and the guides in docs/: short enough to read, every link between them leads somewhere, and every
shell command in their code blocks is run by a test (or says why it cannot be run here).

COMMANDS, below, is the one list: each command of a ```sh block, mapped to the test that runs it or to the reason
it is not run. The commands that no other test runs, and that are cheap and safe, are run at the end of this file.
"""
from __future__ import annotations

import ast
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO
from markdown_it import MarkdownIt

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
SHELL = ("sh", "bash", "shell", "console")
BIN = Path(sys.executable).parent  # the environment running the tests: the guides' .venv/bin


def anchors(text: str) -> set[str]:
    """GitHub's anchors for the headings of a Markdown page."""
    out = set()
    for heading in re.findall(r"^#+ (.+)$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


def test_the_readme_is_short():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; move detail into docs/"


def test_the_readme_names_every_guide_and_the_two_commands():
    readme = (REPO / "README.md").read_text()
    for page in PAGES[1:]:
        assert f"(docs/{page.name})" in readme, f"README.md does not link docs/{page.name}"
    assert {"make test", "make book"} <= set(shell_commands(REPO / "README.md"))


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(REPO).as_posix() for p in PAGES])
def test_links_resolve(page):
    text = page.read_text()
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # an outside address
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{page.name} links to {target}, which does not exist"
        if anchor:
            assert anchor in anchors(dest.read_text()), \
                f"{page.name} links to #{anchor}, no such heading in {dest.name}"


# --- the commands of the guides --------------------------------------------------------------------------------
def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, content) of each code block of a Markdown page, in order; an indented block has language ''."""
    tokens = MarkdownIt("commonmark").parse(text)
    return [(t.info.strip().split(" ")[0] if t.type == "fence" else "", t.content)
            for t in tokens if t.type in ("fence", "code_block")]


def shell_commands(page: Path) -> list[str]:
    """The commands of a page's shell blocks, each on one line, without its trailing comment. In a console
    block only the lines after a `$ ` prompt are commands."""
    out = []
    for lang, content in code_blocks(page.read_text()):
        if lang not in SHELL:
            continue
        for line in content.splitlines():
            if lang == "console":
                if not line.startswith("$ "):
                    continue
                line = line[2:]
            command = re.sub(r"\s+#\s.*$", "", line).strip()
            if command and not command.startswith("#"):
                out.append(" ".join(command.split()))
    return out


@dataclass(frozen=True)
class Run:
    """Run by `test` (tests/<file>.py::<function or fixture>), whose source contains `key`."""
    test: str
    key: str


@dataclass(frozen=True)
class NotRun:
    """Deliberately not run by the tests, for `reason`."""
    reason: str


GRADE_VARIABLES = "tests/test_incremental.py::test_make_grade_passes_the_variables"
NBGRADER_CLI = Run("tests/test_nbgrader_cli.py::clone", "guide_commands()")
COMMANDS: dict[str, Run | NotRun] = {
    # README.md
    "make test": NotRun("it runs this very suite (CI runs it: .ci/run); its set-up step is run by "
                        "tests/test_system_packages.py, and test_make_test_sets_up_then_runs_pytest reads its recipe"),
    "make book": Run("tests/test_book_data.py::course", '"book", f"VENV={venv}"'),
    # docs/students.md
    "make venv": Run("tests/test_docs.py::test_make_venv_installs_the_requirements_and_the_course", '"venv"'),
    ".venv/bin/jupyter lab book/": Run("tests/test_docs.py::test_jupyter_lab_opens_a_chapter_as_a_notebook",
                                       '"lab", "book/"'),
    "sudo apt-get install dataset-fashion-mnist": NotRun(
        "it needs root and changes the machine; tests/test_system_packages.py runs the set-up step that installs "
        "the package, with apt-get replaced by a stand-in"),
    "source .venv/bin/activate": Run("tests/test_docs.py::test_cnn_check_is_on_the_path_once_activated", "source "),
    "cnn-check NOTEBOOK": Run("tests/test_docs.py::test_cnn_check_is_on_the_path_once_activated", "cnn-check "),
    # docs/grading.md
    "make exercises": Run("tests/test_nbgrader_cli.py::test_make_exercises_in_a_fresh_clone_changes_nothing",
                          '"exercises"'),
    # docs/instructors.md
    "git clone <the course's private repository> cnn-course && cd cnn-course": Run(
        "tests/test_nbgrader_cli.py::clone", '"git", "clone"'),
    # make -n: the variables reach the command line; the grading itself is run by tests/test_incremental.py
    "make grade": Run(GRADE_VARIABLES, '["make", "-n", "grade"]'),
    "make grade JOBS=2": Run(GRADE_VARIABLES, '"JOBS=2"'),
    "make grade STUDENT=alice": Run(GRADE_VARIABLES, '"STUDENT=alice,bob"'),
    "make grade ASSIGNMENT=02_cross_correlation": Run(GRADE_VARIABLES, '"ASSIGNMENT=02_cross_correlation"'),
    "make grade FORCE=1": Run(GRADE_VARIABLES, '"FORCE=1"'),
    "make grade PROGRESS=log": Run(GRADE_VARIABLES, '"PROGRESS=log"'),
    'make bench BENCH="--only jobs"': NotRun(
        "it grades twelve notebooks twice (minutes of both cores); tests/test_benchmarks.py runs the jobs section's "
        "grade comparison and the scaling model on given costs"),
    'make bench BENCH="--only scaling"': NotRun(
        "it grades twelve notebooks twice before the model; tests/test_benchmarks.py computes the model and writes "
        "its table from given costs"),
    # make -n: the variables reach the command line; tests/test_similarity.py runs that command line
    "make similarity": Run("tests/test_docs.py::test_make_similarity_passes_the_variables", '"make -n similarity"'),
    "make similarity ASSIGNMENT=02_cross_correlation EARLIER=~/cnn-2025/submitted": Run(
        "tests/test_docs.py::test_make_similarity_passes_the_variables", "EARLIER=~/cnn-2025/submitted"),
    ".venv/bin/nbgrader generate_assignment 02_cross_correlation": NBGRADER_CLI,
    "mkdir -p submitted/alice/02_cross_correlation": NBGRADER_CLI,
    "cp solutions/02_cross_correlation/02_cross_correlation.ipynb submitted/alice/02_cross_correlation/": NBGRADER_CLI,
    ".venv/bin/nbgrader autograde 02_cross_correlation --student alice": NBGRADER_CLI,
    ".venv/bin/nbgrader generate_feedback 02_cross_correlation --student alice": NBGRADER_CLI,
    ".venv/bin/nbgrader export": NBGRADER_CLI,
    "sudo mkdir -p /srv/nbgrader/exchange && sudo chmod 777 /srv/nbgrader/exchange": NotRun(
        "it needs root on the hub's server and creates a system folder; tests/test_exchange.py runs the exchange "
        "in a temporary folder"),
    # docs/cluster.md: tests/test_cluster.py runs the scheduler and workers on loopback with the same options
    ".venv/bin/python -m cnngrader.pipeline.certs certs --host grader1.example.org": Run(
        "tests/test_cluster.py::test_the_certificate_helper_writes_the_course_certificates",
        '"cnngrader.pipeline.certs", "certs", "--host"'),
    "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION=True .venv/bin/dask scheduler --protocol tls --port 8786 "
    "--tls-ca-file certs/ca.pem --tls-cert certs/scheduler.pem --tls-key certs/scheduler-key.pem": Run(
        "tests/test_cluster.py::scheduler_command", '"scheduler", "--host", "127.0.0.1", "--port"'),
    "make grade-worker CLUSTER=tls://grader1.example.org:8786 WORKERS=8": Run(
        "tests/test_cluster.py::test_make_passes_the_cluster_variables", '"grade-worker"'),
    "make grade CLUSTER=tls://grader1.example.org:8786": Run(
        "tests/test_cluster.py::test_make_passes_the_cluster_variables", '"CLUSTER=tls://'),
    "sbatch --array=1-10 grade-workers.sbatch": NotRun(
        "it needs a Slurm cluster; its script runs make grade-worker, whose command line a test checks"),
    "make publish DEST=../cnn-course-public": Run("tests/test_docs.py::test_make_publish_writes_the_student_course",
                                                  '"publish"'),
}


def documented() -> dict[str, list[str]]:
    """command -> the pages whose shell blocks show it."""
    out: dict[str, list[str]] = {}
    for page in PAGES:
        for command in shell_commands(page):
            out.setdefault(command, []).append(page.relative_to(REPO).as_posix())
    return out


def test_every_code_block_is_fenced_and_names_its_language():
    for page in PAGES:
        for lang, content in code_blocks(page.read_text()):
            assert lang, f"{page.name}: a code block without a language (fence it as ```sh or ```python):\n{content}"


def test_every_command_of_the_guides_is_run_by_a_test_or_says_why_not():
    commands = documented()
    assert commands, "no shell commands found in the README and docs/"
    missing = [f"{c!r} ({', '.join(pages)})" for c, pages in commands.items() if c not in COMMANDS]
    assert not missing, "commands no test runs; add each to COMMANDS in tests/test_docs.py:\n" + "\n".join(missing)
    stale = [c for c in COMMANDS if c not in commands]
    assert not stale, f"COMMANDS lists commands the guides no longer show: {stale}"


def function_source(path: Path, name: str) -> str | None:
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            return ast.get_source_segment(path.read_text(), node)
    return None


@pytest.mark.parametrize("command", list(COMMANDS))
def test_the_named_test_runs_the_command(command):
    how = COMMANDS[command]
    if isinstance(how, NotRun):
        assert len(how.reason.split()) >= 5, f"{command!r}: say why it is not run"
        return
    file, _, name = how.test.partition("::")
    path = REPO / file
    assert path.is_file(), f"{command!r}: {file} does not exist"
    source = function_source(path, name)
    assert source is not None, f"{command!r}: {file} has no test or fixture {name}"
    assert how.key in source, f"{command!r}: {how.test} does not contain {how.key!r}"


# --- the commands that no other test runs -----------------------------------------------------------------------
def make(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=kw.pop("timeout", 120), **kw)


def test_make_help_lists_the_targets_of_the_guides():
    proc = make("help")
    assert proc.returncode == 0, proc.stderr
    listed = set(re.findall(r"^make ([\w-]+)", proc.stdout, flags=re.M))
    shown = {c.split()[1] for c in documented() if c.startswith("make ")}
    assert shown - {"venv"} <= listed, f"make help does not list {sorted(shown - {'venv'} - listed)}"


def test_make_test_sets_up_then_runs_pytest():
    lines = make("-n", "test").stdout.splitlines()
    steps = [i for i, line in enumerate(lines) if "tools/system_packages.sh" in line or "-m pytest" in line]
    assert len(steps) == 2 and "system_packages" in lines[steps[0]], lines


def test_make_venv_installs_the_requirements_and_the_course():
    # -W: as if requirements.txt had just changed; -n: only print what `make venv` would run.
    proc = make("-n", "-W", "requirements.txt", "venv")
    assert proc.returncode == 0, proc.stderr
    assert "-m venv .venv" in proc.stdout
    assert "pip install -q -r requirements.txt" in proc.stdout and "pip install -q --no-deps -e" in proc.stdout


def test_make_similarity_passes_the_variables():
    # as typed in a shell: not as a sub-make of `make test`, which would add "Entering directory" lines
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    plain = subprocess.run(["bash", "-c", "make -n similarity"], cwd=REPO, capture_output=True, text=True,
                           timeout=60, env=env).stdout
    assert plain.strip().endswith("-m cnngrader.pipeline similarity"), plain
    line = "make -n similarity ASSIGNMENT=02_cross_correlation EARLIER=~/cnn-2025/submitted"
    out = subprocess.run(["bash", "-c", line], cwd=REPO, capture_output=True, text=True, timeout=60, env=env).stdout
    earlier = os.path.expanduser("~/cnn-2025/submitted")
    assert f'--earlier "{earlier}"' in out and out.strip().endswith("02_cross_correlation"), out


@pytest.mark.parametrize("command, options", [
    ("grade", ["--student", "--force", "--jobs", "--unsandboxed", "--progress"]),
    ("similarity", ["--root", "--earlier", "--threshold"]),
])
def test_the_pipeline_command_line_has_the_options_the_guides_name(command, options):
    proc = subprocess.run([sys.executable, "-m", "cnngrader.pipeline", command, "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for option in options:
        assert option in proc.stdout, f"python -m cnngrader.pipeline {command} has no {option}:\n{proc.stdout}"


def test_make_publish_writes_the_student_course(tmp_path):
    dest = tmp_path / "cnn-course-public"
    proc = make("publish", f"DEST={dest}", timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("README.md", "book", "exercises", "cnnlib", "cnngrader/precheck.py"):
        assert (dest / name).exists(), f"make publish left out {name}"
    assert not (dest / "solutions").exists() and not (dest / "cnngrader" / "pipeline").exists()


def test_cnn_check_is_on_the_path_once_activated(tmp_path):
    notebook = REPO / "solutions" / "01_fc_to_conv" / "01_fc_to_conv.ipynb"
    script = f"source {shlex.quote(str(BIN / 'activate'))} && cnn-check {shlex.quote(str(notebook))}"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"  # the environment's bin/ is on it only through activate
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Would score about" in proc.stdout, proc.stdout
    assert subprocess.run(["bash", "-c", "command -v cnn-check"], env=env, capture_output=True).returncode != 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_jupyter_lab_opens_a_chapter_as_a_notebook(tmp_path):
    """What students.md's `.venv/bin/jupyter lab book/` serves: the lab, and a chapter opened as a notebook
    (jupytext's contents manager, what "Open With" -> "Notebook" asks for)."""
    port, token = free_port(), os.urandom(16).hex()
    env = dict(os.environ, HOME=str(tmp_path), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))
    cmd = [str(BIN / "jupyter"), "lab", "book/", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")  # Jupyter refuses root without it (CI runs as root; a student does not)
    log = tmp_path / "jupyter.log"  # a file, not a pipe: a full pipe would stall the server
    with open(log, "wb") as sink:
        server = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=sink, stderr=sink, start_new_session=True)

    def get(path: str) -> bytes:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"token {token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read()

    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, f"jupyter lab exited:\n{log.read_text()[-3000:]}"
            try:
                get("/api/status")
                break
            except OSError:
                assert time.monotonic() < deadline, "jupyter lab did not answer within 180 s"
                time.sleep(0.5)
        assert b"JupyterLab" in get("/lab")
        model = json.loads(get("/api/contents/02_cross_correlation.md?type=notebook&content=1"))
        assert model["type"] == "notebook" and model["format"] == "json"
        code = [c["source"] for c in model["content"]["cells"] if c["cell_type"] == "code"]
        assert any("cnnlib" in source for source in code), "the chapter's code cells did not come through"
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=30)
