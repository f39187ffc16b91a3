"""The book: it builds offline with zero warnings, every chapter is executed and shows figures and
no errors, the exercises appear as released to students, and nothing from solutions/ leaks into it.

One build per test session (the `book` fixture of conftest.py, shared with test_browser.py), into a
temporary directory so that Sphinx starts from a fresh environment and reports every warning again.
Executed chapters are cached by jupyter-cache in _build/.jupyter_cache, shared with `make book`, so a
repeated run only re-executes chapters whose code changed; the cache is dropped when cnnlib or the
requirements change (the same rule as the Makefile's `book` target). The figure helpers of
cnnlib.plot are tested at the end.
"""
from __future__ import annotations

import html
import re
import sys
import types
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import nbformat
import pytest
import torch
import yaml
from conftest import REPO as ROOT

import cnnlib
from cnngrader.course import load_course
from cnngrader.pipeline.authoring import HIDDEN_MARKERS, SOLUTION_MARKERS
from cnnlib import plot as cplot

COURSE = load_course(ROOT)
ASSIGNMENTS = list(COURSE.ids)
CHAPTERS = [Path(a.chapter).stem for a in COURSE.assignments]  # book/<chapter>.md goes with exercises/<id>/

MARKERS = tuple(m.removeprefix("### ") for m in SOLUTION_MARKERS + HIDDEN_MARKERS)
# Lines too generic to say anything about a leak, even when they come from a solution region.
COMMON_LINES = {
    "pass", "return y", "return Y", "return X", "return out", "return net", "return total", "else:", "try:",
    "break", "continue", "return", "return None", "net.eval()", "net.train()", "raise NotImplementedError()",
}
MIN_LINE_CHARS = 16


def html_text(path: Path) -> str:
    """The text of an HTML page: tags removed (code is split into many <span>s), entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", path.read_text(encoding="utf-8")))


# --- the build --------------------------------------------------------------------------------


# The chapters' kernels write their own log to the build's stderr. Two of its messages are not the
# book's: ipykernel's note that it listens on TCP, and a race in ipykernel 7's own shutdown, after the
# chapter has run, where a ZMQStream callback meets a socket that another of its threads has closed (once in
# the course's first 28 CI runs). That one is skipped only as a whole block: the tornado logger's line, a
# traceback, and this ZMQError as its last line.
KERNEL_TCP_NOTE = "Kernel is running over TCP"
SHUTDOWN_RACE = ("ERROR:tornado.general:Uncaught exception in ZMQStream callback",
                 "zmq.error.ZMQError: Socket operation on non-socket")


def build_problems(log: str) -> list[str]:
    """The log's WARNING, ERROR and CRITICAL lines, less the kernels' two messages above."""
    lines, problems, i = log.splitlines(), [], 0
    while i < len(lines):
        if lines[i] == SHUTDOWN_RACE[0] and i + 1 < len(lines) and lines[i + 1].startswith("Traceback"):
            end = i + 2
            while end < len(lines) and lines[end].startswith(" "):
                end += 1
            if end < len(lines) and lines[end] == SHUTDOWN_RACE[1]:
                i = end + 1
                continue
        if re.search(r"\b(WARNING|ERROR|CRITICAL)\b", lines[i]) and KERNEL_TCP_NOTE not in lines[i]:
            problems.append(lines[i])
        i += 1
    return problems


def test_build_problems_skip_only_the_kernels_shutdown_race():
    race = [SHUTDOWN_RACE[0], "Traceback (most recent call last):",
            '  File ".../zmq/eventloop/zmqstream.py", line 573, in _run_callback',
            "    f = callback(*args, **kwargs)", "        ^^^^^^^^", SHUTDOWN_RACE[1]]
    other = [SHUTDOWN_RACE[0], "Traceback (most recent call last):", '  File "x.py", line 1, in f',
             "ValueError: a chapter's own error"]
    sphinx = "book/05_pooling.md:12: WARNING: undefined label"
    assert build_problems("\n".join(["build succeeded", *race, "[IPKernelApp] WARNING | " + KERNEL_TCP_NOTE])) == []
    assert build_problems("\n".join([*race, sphinx])) == [sphinx]
    assert build_problems("\n".join(other)) == [SHUTDOWN_RACE[0]]
    assert build_problems("\n".join(race[:-1])) == [SHUTDOWN_RACE[0]]  # no ZMQError at the end: reported


@pytest.mark.slow
def test_book_builds_without_warnings(book):
    html_dir, log = book
    assert "build succeeded" in log
    problems = build_problems(log)
    assert not problems, "warnings in the build:\n" + "\n".join(problems)
    assert (html_dir / "index.html").exists()


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_page_is_executed_with_figures_and_no_errors(book, chapter):
    html_dir, _ = book
    page = html_dir / "book" / f"{chapter}.html"
    assert page.exists(), f"{page} was not built"
    source = page.read_text(encoding="utf-8")
    figures = re.findall(r'<img[^>]+src="\.\./_images/[^"]+\.png"', source)
    assert figures, f"{chapter}: no figure from an executed cell"
    bad = re.findall(r'class="[^"]*\boutput (?:traceback|error|stderr)\b', source)
    assert not bad, f"{chapter}: error or stderr output: {bad}"
    assert "Traceback (most recent call last)" not in html_text(page)
    assert source.count('class="cell_output') >= 5, f"{chapter}: too few executed outputs"


@pytest.mark.slow
def test_lenet_page_names_its_dataset_and_hides_the_choice(book):
    html_dir, _ = book
    page = html_dir / "book" / "06_lenet.html"
    text = html_text(page)
    assert "We train on Fashion-MNIST" in text
    # The cells that load the data or choose by dataset are not on the page, nor are raw notices.
    for hidden in ("cnnlib.load_data(", 'data.name == "digits"', "NOTICE:", "DatasetUnavailable"):
        assert hidden not in text, f"{hidden!r} is shown on the LeNet page"
    if all((Path("/usr/share/datasets/fashion-mnist") / n).is_file() for n in cnnlib.data.FASHION_MNIST_FILES):
        assert "could not be loaded when this page was built" not in text  # trained on the real data
        assert "trouser" in text and "ankle boot" in text  # Fashion-MNIST's class names in the outputs


@pytest.mark.slow
def test_build_says_which_dataset_the_lenet_chapter_used(book):
    """Chapters 3-5 show Fashion-MNIST images and chapter 6 trains on them: the build names the data of each."""
    html_dir, log = book
    lines = (html_dir.parent / "datasets.txt").read_text(encoding="utf-8").splitlines()
    what, _ = cnnlib.data.data_source()
    data_chapters = ["book/03_padding_stride", "book/04_channels", "book/05_pooling", "book/06_lenet"]
    if what.startswith("Fashion-MNIST from"):
        assert lines == [f"{doc} used {what}" for doc in data_chapters]
    else:
        assert lines[:-1] == [f"{doc} used {cnnlib.data.DIGITS_FALLBACK}" for doc in data_chapters]
        assert lines[-1].startswith(f"NOTICE: {', '.join(data_chapters)} fell back to the bundled digits.")
    assert all(line in log for line in lines)


@pytest.mark.slow
def test_training_logs_are_one_output_box(book):
    html_dir, _ = book
    source = (html_dir / "book" / "06_lenet.html").read_text(encoding="utf-8")
    cells = re.split(r'<div class="cell docutils container"', source)
    logs = [cell for cell in cells if "epoch  1  lr" in html.unescape(cell)]
    assert len(logs) >= 2, "no training log found on the LeNet page"
    for cell in logs:
        assert cell.count('class="output stream highlight-myst-ansi notranslate"') == 1, \
            "a training log is split across several output boxes"


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_exercise_page_is_the_unexecuted_student_version(book, assignment):
    html_dir, _ = book
    release = ROOT / "exercises" / assignment / f"{assignment}.ipynb"
    if not release.exists():
        pytest.skip(f"{release.relative_to(ROOT)} has not been generated yet")
    page = html_dir / "exercises" / assignment / f"{assignment}.html"
    assert page.exists(), f"{page} was not built"
    text = html_text(page)
    assert "YOUR CODE HERE" in text and "NotImplementedError" in text
    source = page.read_text(encoding="utf-8")
    assert 'class="cell_output' not in source, "exercise pages must not be executed"
    assert f"_sources/exercises/{assignment}/{assignment}.ipynb" in source, "no download button for the notebook"
    repo = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    assert ("colab.research.google.com" in source) == bool(repo)  # Colab opens .ipynb files, from the repository


PLACEHOLDERS = ("github.com/cnn-course", "hub.example.org", "example.org")


@pytest.mark.slow
def test_no_placeholder_links_and_buttons_only_when_configured(book):
    html_dir, _ = book
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repo, hub = config["repository"]["url"], config["launch_buttons"]["jupyterhub_url"]
    page = (html_dir / "book" / "02_cross_correlation.html").read_text(encoding="utf-8")
    assert "colab.research.google.com" not in page  # Colab cannot open a MyST .md chapter
    assert "_sources/book/02_cross_correlation.ipynb" in page  # the executed notebook, downloadable
    assert ("mybinder.org/v2/" in page) == bool(repo)
    assert ("JupyterHub" in page) == bool(repo and hub)
    assert ('class="btn btn-sm btn-source-repository-button' in page) == bool(repo)
    for path in html_dir.rglob("*.html"):
        source = path.read_text(encoding="utf-8")
        for placeholder in PLACEHOLDERS:
            assert placeholder not in source, f"{path.relative_to(html_dir)} links to the placeholder {placeholder}"


def test_course_site_shows_link_buttons_only_when_set():
    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    try:
        import course_site
    finally:
        sys.path.pop(0)

    def configured(repository_url, jupyterhub_url):
        launch = {"binderhub_url": "https://mybinder.org", "colab_url": "https://colab.research.google.com",
                  "jupyterhub_url": jupyterhub_url, "notebook_interface": "jupyterlab"}
        options = {"repository_url": repository_url, "use_repository_button": False, "use_issues_button": False,
                   "launch_buttons": launch}
        config = types.SimpleNamespace(html_theme_options=options, html_static_path=[], mathjax_path=None)
        course_site.configure(None, config)
        return config

    empty = configured("", "")
    assert empty.html_theme_options["use_repository_button"] is False
    assert empty.html_theme_options["use_issues_button"] is False
    assert set(empty.html_theme_options["launch_buttons"]) == {"notebook_interface"}
    assert "repository_url" not in empty.html_theme_options
    repo_only = configured("https://github.com/someone/cnn", "")
    assert repo_only.html_theme_options["use_repository_button"] is True
    assert repo_only.html_theme_options["use_issues_button"] is True
    assert set(repo_only.html_theme_options["launch_buttons"]) == {"binderhub_url", "colab_url", "notebook_interface"}
    both = configured("https://github.com/someone/cnn", "https://hub.uni.edu")
    assert both.html_theme_options["launch_buttons"]["jupyterhub_url"] == "https://hub.uni.edu"
    assert both.mathjax_path == "mathjax/tex-chtml.js"  # served from the site, not a CDN
    assert (course_site.mathjax_dir() / "tex-chtml.js").is_file()


@pytest.mark.slow
def test_maths_is_served_locally_and_only_where_needed(book):
    html_dir, _ = book
    assert (html_dir / "_static" / "mathjax" / "tex-chtml.js").is_file()
    assert list((html_dir / "_static" / "mathjax" / "output" / "chtml" / "fonts").rglob("*.woff"))
    for path in html_dir.rglob("*.html"):
        source = path.read_text(encoding="utf-8")
        assert "cdn.jsdelivr.net" not in source and "unpkg.com/mathjax" not in source, path
    assert "mathjax/tex-chtml.js" not in (html_dir / "book" / "intro.html").read_text(encoding="utf-8")
    assert "mathjax/tex-chtml.js" in (html_dir / "book" / "05_pooling.html").read_text(encoding="utf-8")


@pytest.mark.slow
def test_images_have_descriptions_not_paths(book):
    html_dir, _ = book
    for path in html_dir.rglob("*.html"):
        for alt in re.findall(r'<img[^>]*\balt="([^"]*)"', path.read_text(encoding="utf-8")):
            assert alt.strip() and not re.search(r"/|\.png$|\.svg$", alt), f"{path.relative_to(html_dir)}: alt {alt!r}"
    lenet = (html_dir / "book" / "06_lenet.html").read_text(encoding="utf-8")
    assert 'alt="Confusion matrix of the modern LeNet' in lenet  # a chapter's own description wins


@pytest.mark.slow
def test_thebe_configuration_script_once_and_bibliography(book):
    html_dir, _ = book
    for path in html_dir.rglob("*.html"):
        assert path.read_text(encoding="utf-8").count("const THEBE_JS_URL") <= 1, path
    refs = html_text(html_dir / "book" / "references.html")
    for author in ("LeCun", "Krizhevsky", "Simonyan", "Szegedy", "He, K", "Ioffe", "Howard", "Tan, M", "Xiao"):
        assert author in refs.replace("Kaiming He", "He, K").replace("Mingxing Tan", "Tan, M"), author
    lenet = (html_dir / "book" / "06_lenet.html").read_text(encoding="utf-8")
    assert lenet.count('href="references.html#') >= 8  # the chapter cites the papers it mentions


# --- nothing secret in the book ----------------------------------------------------------------


def solution_lines(nb_path: Path) -> set[str]:
    """Stripped lines of every solution region and hidden-test block of an nbgrader source notebook."""
    nb = nbformat.read(nb_path, as_version=4)
    lines: set[str] = set()
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        src = cell.source.splitlines()
        inside = None
        found_marker = False
        for line in src:
            stripped = line.strip()
            if re.search(r"BEGIN (SOLUTION|HIDDEN TESTS)", stripped):
                inside, found_marker = True, True
                continue
            if re.search(r"END (SOLUTION|HIDDEN TESTS)", stripped):
                inside = False
                continue
            if inside:
                lines.add(stripped)
        if meta.get("solution") and not found_marker:
            lines.update(line.strip() for line in src)  # a solution cell without markers is replaced whole
    return lines


def public_text() -> str:
    """Everything students see anyway: the released notebooks and the reference library cnnlib.

    A solution line that also appears there (a recap in an exercise's text, or the same line in
    cnnlib, whose source the chapters include) gives nothing away.
    """
    parts = []
    for nb_path in sorted((ROOT / "exercises").glob("*/*.ipynb")):
        parts.extend(cell.source for cell in nbformat.read(nb_path, as_version=4).cells)
    parts.extend(path.read_text(encoding="utf-8") for path in sorted((ROOT / "cnnlib").glob("*.py")))
    return "\n".join(parts)


def test_solution_line_extraction(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("def f(X):\n    ### BEGIN SOLUTION\n    secret = X.unfold(0, 2, 1)\n"
                                  "    ### END SOLUTION\n"),
        nbformat.v4.new_code_cell("assert f(1) == 1\n### BEGIN HIDDEN TESTS\nassert hidden_check(f)\n"
                                  "### END HIDDEN TESTS\n"),
        nbformat.v4.new_markdown_cell("An answer written whole.", metadata={"nbgrader": {"solution": True}}),
    ]
    path = tmp_path / "a.ipynb"
    nbformat.write(nb, path)
    assert solution_lines(path) == {"secret = X.unfold(0, 2, 1)", "assert hidden_check(f)", "An answer written whole."}


def secret_lines() -> set[str]:
    """The solution and hidden-test lines of solutions/ that say something: long enough, not common
    idioms, not also in a public file (cnnlib, the exercises). Skips when solutions/ is empty."""
    sources = sorted((ROOT / "solutions").glob("*/*.ipynb"))
    if not sources:
        pytest.skip("solutions/ has no notebooks yet")
    public = public_text()
    secret = set()
    for nb_path in sources:
        secret |= {line for line in solution_lines(nb_path)
                   if len(line) >= MIN_LINE_CHARS and line not in COMMON_LINES and line not in public
                   and not line.startswith("#")}
    assert secret, "no solution lines were found in solutions/: the extraction is broken"
    return secret


@pytest.mark.slow
def test_no_solution_or_hidden_test_in_the_book(book):
    html_dir, _ = book
    secret = secret_lines()

    pages = [p for p in html_dir.rglob("*") if p.is_file() and p.suffix in (".html", ".txt", ".ipynb", ".md", ".js")]
    leaks = []
    for page in pages:
        raw = page.read_text(encoding="utf-8", errors="replace")
        text = html_text(page) if page.suffix == ".html" else raw
        for marker in MARKERS:
            if marker in raw or marker in text:
                leaks.append(f"{page.relative_to(html_dir)}: marker {marker!r}")
        for line in secret:
            if line in text:
                leaks.append(f"{page.relative_to(html_dir)}: {line!r}")
    assert not leaks, "solution content in the built book:\n" + "\n".join(leaks[:50])
    assert not (html_dir / "solutions").exists()


# --- self-checks: no answer in the book, every private answer passes its check ------------------

ANSWERS_FILE = ROOT / "instructors" / "self_check_answers.toml"
QUESTION = re.compile(r"^\*\*(\d+\.\d+)\*\*", flags=re.M)
ANSWER_CELL = re.compile(r"```\{code-cell\} ipython3\n(answer = [^\n]*)\n```")


def self_check_answers() -> dict[str, dict[str, str]]:
    import tomllib

    return tomllib.loads(ANSWERS_FILE.read_text(encoding="utf-8"))


def chapter_questions(chapter: str) -> list[str]:
    text = (ROOT / "book" / f"{chapter}.md").read_text(encoding="utf-8")
    return QUESTION.findall(text.split("## Check your understanding", 1)[1])


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_self_check_answer_cells_hold_no_answer(chapter):
    """Every answer cell of the published chapter is `answer = ...`, one per question, each with a
    private answer; the page says that it holds no answers."""
    text = (ROOT / "book" / f"{chapter}.md").read_text(encoding="utf-8")
    quiz = text.split("## Check your understanding", 1)[1]
    questions = chapter_questions(chapter)
    cells = ANSWER_CELL.findall(quiz)
    assert len(questions) >= 4 and len(cells) == len(questions), (questions, cells)
    assert all(re.fullmatch(r"answer = \.\.\.(  #.*)?", cell) for cell in cells), cells
    assert "hide-input" not in quiz.split("## Summary", 1)[0]
    assert "This page holds no answers" in quiz
    answers = self_check_answers()
    assert set(questions) <= set(answers), set(questions) - set(answers)
    for q in questions:
        assert quiz.count(f'quiz.check("{q}"') == 1, q


def test_self_check_answers_are_private_and_cover_the_book():
    answers = self_check_answers()
    asked = [q for chapter in CHAPTERS for q in chapter_questions(chapter)]
    assert sorted(answers) == sorted(asked) and len(asked) == len(set(asked))
    assert all(entry["answer"].strip() not in ("", "...") for entry in answers.values())
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import publish
    finally:
        sys.path.remove(str(ROOT / "tools"))
    # tools/publish.py never copies this file, and refuses a copy that holds one like it.
    assert any(Path(ANSWERS_FILE.name).match(pattern) for pattern in publish.NEVER)


@pytest.mark.parametrize("chapter, topics", [
    ("02_cross_correlation", ("Two convolutions are one", "A second derivative")),
    ("05_pooling", ("Average pooling is a convolution", "Max pooling is not")),
])
def test_open_exercises_come_before_the_summary(chapter, topics):
    text = (ROOT / "book" / f"{chapter}.md").read_text(encoding="utf-8")
    exercises = text.split("## Exercises", 1)[1].split("## Summary", 1)[0]
    assert len(re.findall(r"^\d+\. \*\*", exercises, flags=re.M)) >= 3
    assert all(f"**{topic}.**" in exercises for topic in topics)
    assert "```" not in exercises  # open questions: no code, no answer


@pytest.mark.slow
def test_book_pages_show_no_self_check_answer(book):
    """The built pages hold no answer: each check printed `not answered yet`, and no private answer
    appears in an answer cell."""
    html_dir, _ = book
    answers = self_check_answers()
    for chapter in CHAPTERS:
        text = html_text(html_dir / "book" / f"{chapter}.html")
        for q in chapter_questions(chapter):
            assert f"{q}: not answered yet" in text, (chapter, q)
            assert f"answer = {answers[q]['answer']}" not in text, (chapter, q)
        assert text.count("answer = ...") == len(chapter_questions(chapter))


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_private_answers_pass_the_chapters_checks(chapter):
    """Each chapter runs with the instructors' answers in place of `...`, and every check prints
    `correct`. Chapter 6's checks need only its imports, so its training is skipped."""
    import jupytext
    from nbclient import NotebookClient

    answers = self_check_answers()
    nb = jupytext.read(ROOT / "book" / f"{chapter}.md")
    quiz_start = next(i for i, c in enumerate(nb.cells) if "## Check your understanding" in c.source)
    if chapter == "06_lenet":
        nb.cells = nb.cells[:2] + nb.cells[quiz_start:]  # the title and the imports, then the questions
    question = None
    for cell in nb.cells:
        if cell.cell_type == "markdown" and (m := QUESTION.search(cell.source)):
            question = m.group(1)
        elif cell.cell_type == "code" and cell.source.startswith("answer = ..."):
            cell.source = f"answer = {answers[question]['answer']}"
        if cell.cell_type == "code":
            cell.source = cell.source.replace("%matplotlib inline", "")
    NotebookClient(nb, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "book")}}).execute()
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
                      if o.get("output_type") == "stream")
    for q in chapter_questions(chapter):
        assert f"{q}: correct" in printed, (q, [line for line in printed.splitlines() if line.startswith(q)])


# --- the chapters' sources -------------------------------------------------------------------


def test_config_keeps_solutions_out_and_exercises_unexecuted():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["only_build_toc_files"] is True
    assert "solutions/**" in config["exclude_patterns"]
    assert config["execute"]["execute_notebooks"] == "cache"
    assert "exercises/*/*.ipynb" in config["execute"]["exclude_patterns"]
    assert config["execute"]["raise_on_error"] is True
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    files += [s["file"] for part in toc["parts"] for c in part["chapters"]
              for s in c.get("sections", []) if "file" in s]
    assert not [f for f in files if f.startswith("solutions")]
    assert [f"book/{chapter}" for chapter in CHAPTERS] == files[: len(CHAPTERS)]


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_formula_section_has_an_assert(chapter):
    """Each section of a chapter that states a display formula checks something in an executed cell."""
    text = (ROOT / "book" / f"{chapter}.md").read_text(encoding="utf-8")
    assert text.startswith("---\n") and "file_format: mystnb" in text and "kernelspec:" in text
    sections = re.split(r"^## ", text, flags=re.M)[1:]
    assert sections, f"{chapter} has no sections"
    for section in sections:
        title = section.splitlines()[0]
        if "$$" not in section or title == "Summary":
            continue
        cells = re.findall(r"```\{code-cell\}[^\n]*\n(.*?)```", section, flags=re.S)
        assert any(re.search(r"^\s*assert ", cell, flags=re.M) for cell in cells), \
            f"{chapter}, section {title!r}: a formula without an assert cell"


# --- figure helpers (cnnlib.plot) ---------------------------------------------------------------


def test_show_matrix_writes_values_and_outlines_the_highlight():
    M = torch.arange(6.0).reshape(2, 3)
    ax = cplot.show_matrix(M, title="M", highlight=(0, 1, 2, 2))
    assert [t.get_text() for t in ax.texts] == ["0", "1", "2", "3", "4", "5"]
    (rect,) = ax.patches
    assert rect.get_xy() == (0.5, -0.5) and rect.get_width() == 2 and rect.get_height() == 2
    assert len(cplot.show_matrix(M, annotate=False).texts) == 0
    with pytest.raises(ValueError, match="M must be a 2-D"):
        cplot.show_matrix(torch.zeros(2, 2, 2))
    plt.close("all")


def test_plot_corr2d_steps_shows_every_window():
    X = torch.arange(9.0).reshape(3, 3)
    K = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    axes = cplot.plot_corr2d_steps(X, K, cnnlib.corr2d(X, K))
    assert axes.shape == (4, 3)
    assert [ax.patches[0].get_xy() for ax in axes[:, 0]] == [(-0.5, -0.5), (0.5, -0.5), (-0.5, 0.5), (0.5, 0.5)]
    assert axes[0, 2].get_title().endswith("= 19") and axes[3, 2].get_title().endswith("= 43")
    with pytest.raises(ValueError, match="Y must have shape"):
        cplot.plot_corr2d_steps(X, K, torch.zeros(3, 3))
    plt.close("all")


def test_plot_receptive_fields_plots_cnnlib_values():
    stacks = {"a": [(3, 1)] * 3, "b": [(3, 2), (3, 2)]}
    ax = cplot.plot_receptive_fields(stacks)
    ys = [list(line.get_ydata()) for line in ax.lines]
    assert ys == [[1, 3, 5, 7], [1, 3, 7]]
    plt.close("all")


def test_plot_feature_maps_3d_and_confusion_matrix():
    ax = cplot.plot_feature_maps_3d(torch.rand(3, 4, 5))
    assert len(ax.collections) == 3  # one plane per channel
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        cplot.plot_feature_maps_3d(torch.rand(4, 5))
    cm = torch.tensor([[5, 1], [0, 4]])
    ax = cplot.plot_confusion_matrix(cm, ["a", "b"])
    assert ax.images[0].get_array()[0, 0] == pytest.approx(5 / 6)
    with pytest.raises(ValueError, match="len\\(labels\\)"):
        cplot.plot_confusion_matrix(cm, ["a", "b", "c"])
    plt.close("all")


def test_show_images_shares_one_scale_when_asked():
    dim, bright = torch.full((4, 4), 0.2), torch.full((4, 4), 0.8)
    axes = cplot.show_images([dim, bright], 1, 2, vmin=0, vmax=1)
    assert [ax.images[0].get_clim() for ax in axes] == [(0, 1), (0, 1)]
    plt.close("all")


def test_lenet_chapter_figures_have_captions_and_questions_check_in_place():
    """Chapter 6: every figure cell has a numbered caption, the quiz checks answers with cnnlib.quiz,
    the network is called simplified, and the later architectures are cited."""
    text = (ROOT / "book" / "06_lenet.md").read_text(encoding="utf-8")
    cells = re.findall(r"```\{code-cell\}[^\n]*\n(.*?)```", text, flags=re.S)
    figures = [cell for cell in cells if "plt.show()" in cell]
    assert len(figures) >= 10
    for cell in figures:
        assert "caption:" in cell and "name: fig-" in cell, cell[:200]
    quiz = text.split("## Check your understanding", 1)[1].split("## Summary", 1)[0]
    assert quiz.count('quiz.check("6.') >= 5
    assert "a simplified LeNet-5" in text and "60_000" in text
    for key in ("lin2013network", "sandler2018mobilenetv2", "lecun1998gradient", "ioffe2015batch"):
        assert f"{{cite}}`{key}`" in text, key
    assert "../exercises/06_lenet/06_lenet" in text
    # batch norm is explained before the modern network uses it
    assert text.index("## Batch normalisation") < text.index('modern = cnnlib.lenet("modern")')
