"""Making one submission folder gradable, or saying in one line why it is not.

Shared by `make grade` (the plan step) and the plain `nbgrader autograde` (nbgrader_hooks)."""
from __future__ import annotations

import glob
import logging
import os
import stat
from pathlib import Path

import nbformat
from nbformat import NotebookNode
from traitlets.config import Config

from cnngrader.pipeline import csvsafe, notebook_read, safefiles
from cnngrader.pipeline.config import CoursePaths

log = logging.getLogger("cnngrader.pipeline")


def prepare_submission(cfg: Config | CoursePaths, student: str, assignment: str) -> str | None:
    """Make a submission gradable, or say in one line why it is not (prepare_notebooks, without the
    notebooks it read)."""
    return prepare_notebooks(CoursePaths.of(cfg), student, assignment)[0]


def prepare_notebooks(paths: CoursePaths, student: str, assignment: str
                      ) -> tuple[str | None, dict[Path, NotebookNode]]:
    """(why it is not gradable or None, its graded notebooks as read).

    The student id must be one a CSV and a path can carry (csvsafe.student_id_problem). Entries
    that are not plain files or folders (symlinks, FIFOs, sockets, devices, hard links to outside
    files) are removed from the folder, a line each, and a folder over safefiles.FileLimits (file
    count, apparent size) or nested deeper than safefiles.MAX_TREE_DEPTH is not graded.

    A hidden `..ipynb` is ignored, with a line (set_aside_odd_files). A single notebook saved under
    another name (a browser's "02_cross_correlation (1).ipynb") is renamed to the assignment's
    notebook name, and the log says so. A notebook that is not a readable notebook (corrupt JSON,
    truncated) is reported and left ungraded."""
    label = f"{student}/{assignment}"
    folder = paths.submission(student, assignment)
    if why := csvsafe.student_id_problem(student):
        return f"{student!r}/{assignment}: {why}; not graded", {}
    if deep := safefiles.too_deep(folder):
        return (f"{label}: the submission holds folders nested more than {safefiles.MAX_TREE_DEPTH} deep "
                f"({deep}/...); not graded"), {}
    try:  # before nbgrader lists or copies anything of it: links, FIFOs, devices go; sizes are checked
        safefiles.clean(folder, label=label)
    except safefiles.TooBig as e:
        return f"{label}: the submission is too big ({e}); not graded", {}
    except OSError as e:
        return f"{label}: the submission cannot be read ({e.strerror or e}); not graded", {}
    for line in set_aside_odd_files(folder):
        log.warning("%s: %s", label, line)
    renamed = rename_single_notebook(paths.source(assignment), folder)
    if renamed:
        log.info("%s: graded %r as %r, the assignment's notebook", label, renamed[0].name, renamed[1].name)
    notebooks = {}
    for path in graded_notebooks(folder):
        try:
            for line in notebook_read.repair(path):  # bad UTF-8, deep metadata: graded, with a note
                log.warning("%s: %s: %s", label, path.name, line)
            notebooks[path] = nbformat.read(str(path), as_version=4)
        except Exception as e:  # any unreadable file is reported the same way
            why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            return f"{label}: {path.name} is not a readable notebook ({why[:200]}); not graded", {}
    return None, notebooks


def rename_single_notebook(source: Path, folder: Path) -> tuple[Path, Path] | None:
    """When the assignment (its source folder) has one notebook and the submission folder holds one
    notebook under another name, rename it to the assignment's name; returns (old, new) or None."""
    expected = sorted(p.name for p in source.glob("*.ipynb"))
    present = [p.name for p in graded_notebooks(folder)]
    if len(expected) != 1 or len(present) != 1 or present == expected:
        return None
    old, new = folder / present[0], folder / expected[0]
    old.rename(new)
    return old, new


def graded_notebooks(folder: Path) -> list[Path]:
    """The notebooks nbgrader grades in a submission folder: its `*.ipynb` as nbgrader's glob finds them
    (a hidden name such as `..ipynb` is not one), regular files only."""
    found = []
    for path in sorted(glob.glob(os.path.join(glob.escape(str(folder)), "*.ipynb"))):
        try:
            if stat.S_ISREG(os.lstat(path).st_mode):
                found.append(Path(path))
        except OSError:
            pass  # removed meanwhile
    return found


_SPECIAL = {stat.S_IFIFO: "named pipe", stat.S_IFSOCK: "socket", stat.S_IFCHR: "device file",
            stat.S_IFBLK: "device file"}


def set_aside_odd_files(folder: Path) -> list[str]:
    """Neutralise what in a submission folder would stop a correct notebook from being graded; one line
    for the log each. Named pipes, sockets and device files are removed: they hold no data, and copying
    one fails and reading one blocks. A hidden `*.ipynb` (`..ipynb`, an editor's leftover) is left
    where it is, and not graded."""
    lines = []
    for top, _dirs, files in os.walk(folder):
        for name in sorted(files):
            path = os.path.join(top, name)
            rel = os.path.relpath(path, folder)
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                continue
            kind = _SPECIAL.get(stat.S_IFMT(mode))
            if kind:
                os.unlink(path)
                lines.append(f"removed the {kind} {rel!r} from the submission: only regular files are graded")
            elif top == str(folder) and name.startswith(".") and name.endswith(".ipynb"):
                lines.append(f"ignored {rel!r}: a hidden file is not a notebook to grade")
    return lines
