"""ruff is clean on the whole tree, with the settings of pyproject.toml ([tool.ruff]), and every `# noqa` that
silences it names its rule and says why."""
from __future__ import annotations

import io
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest
from conftest import REPO

# ruff is pinned in requirements.txt, so it is installed beside the interpreter that runs the tests.
RUFF = Path(sys.executable).parent / "ruff"
NOQA = re.compile(r"#\s*(?:ruff\s*:\s*)?noqa\b", re.I)
# The marker, a colon, one or more rule codes, then a reason in words: in parentheses or after a dash.
EXPLAINED = re.compile(r"#\s*(?:ruff\s*:\s*)?noqa:\s*[A-Z]+[0-9]+(?:\s*,\s*[A-Z]+[0-9]+)*"
                       r"\s*(?:\((?P<paren>[^)]*[A-Za-z]{2}[^)]*)\)|[-–—]\s*(?P<dash>.*[A-Za-z]{2}.*))$")


def ruff(*args: str) -> subprocess.CompletedProcess:
    if not RUFF.exists():
        pytest.fail(f"ruff is not installed next to {sys.executable}; run `make venv` (it is in requirements.txt)")
    return subprocess.run([str(RUFF), *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def linted_files() -> list[Path]:
    """The files ruff checks: its own exclusions (pyproject.toml) decide, not a second list here."""
    proc = ruff("check", "--show-files", "--no-cache", ".")
    assert proc.returncode == 0, proc.stderr
    files = [Path(line) for line in proc.stdout.splitlines() if line.strip()]
    return [f for f in files if f.suffix == ".py"]


def noqa_comments(path: Path) -> list[tuple[int, str]]:
    """(line, comment) for each comment of a Python file that contains a noqa marker."""
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
    return [(tok.start[0], tok.string) for tok in tokens if tok.type == tokenize.COMMENT and NOQA.search(tok.string)]


def unexplained(comment: str) -> bool:
    marker = NOQA.search(comment)
    return EXPLAINED.fullmatch(comment[marker.start():].rstrip()) is None


def test_ruff_is_clean_on_the_whole_tree():
    proc = ruff("check", "--no-cache", "--output-format", "concise", ".")
    assert proc.returncode == 0, f"ruff check . found problems:\n{proc.stdout}{proc.stderr}"


def test_no_noqa_is_left_over():
    # RUF100: a noqa for a rule that no longer fires there, or for a rule this project does not enable.
    proc = ruff("check", "--no-cache", "--output-format", "concise", "--extend-select", "RUF100", ".")
    unused = [line for line in proc.stdout.splitlines() if "RUF100" in line]
    assert not unused, "noqa markers that silence nothing; remove them:\n" + "\n".join(unused)


def test_every_noqa_names_its_rule_and_says_why():
    bad = []
    for path in linted_files():
        for line, comment in noqa_comments(path):
            if unexplained(comment):
                bad.append(f"{path.relative_to(REPO)}:{line}: {comment}")
    assert not bad, ("a noqa must name its rule and give a reason, as in `# noqa: E402 (why)`:\n" + "\n".join(bad))


def test_the_noqa_rule_tells_a_reason_from_none():
    assert not unexplained("# noqa: E402 (torch must be imported after the thread settings)")
    assert not unexplained("# noqa: F401, E402 - only whether it imports matters")
    assert not unexplained("# keep this  # noqa: E731 (one row of this table)")
    for bare in ("# noqa", "# noqa: E402", "# noqa: E402 ()", "# noqa (why)", "# NOQA: e402 (lower case)",
                 "# ruff: noqa", "# noqa: E402 -"):
        assert unexplained(bare), bare


def test_the_noqa_scan_sees_comments_only(tmp_path):
    source = tmp_path / "m.py"
    source.write_text('TEXT = "# noqa"\nimport os  # noqa: F401\nimport sys  # noqa: F401 (re-exported)\n')
    found = noqa_comments(source)
    assert [line for line, _ in found] == [2, 3]
    assert [unexplained(c) for _, c in found] == [True, False]


def test_no_issue_numbers_in_code():
    """Code says why, not which tracker entry asked for it; the chapters and assignment sources too (students read
    them)."""
    pattern = re.compile(r"\bissues?\s*#?\s*\d+", re.I)
    sources = [*linted_files(), *(REPO / "book").glob("*.md"), *(REPO / "assignments").glob("*/*.md")]
    found = [f"{path.relative_to(REPO)}:{n}: {line.strip()}" for path in sources
             for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert not found, "issue numbers in code:\n" + "\n".join(found)
