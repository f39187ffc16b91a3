"""Grading into a PostgreSQL gradebook, the set-up for several machines or several graders.

The fixture starts a throw-away PostgreSQL server from Debian's postgresql package on loopback
(as the `postgres` user when the tests run as root, since initdb refuses root) and stops it
afterwards. Without the server binaries or the psycopg2 driver the test is skipped.
"""
from __future__ import annotations

import csv
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
from traitlets.config import Config

from cnngrader.pipeline.grade import course_config, grade_course, make_submissions
from cnngrader.pipeline.kernel_start import stop_zygote
from cnngrader.pipeline.report import gradebook_rows

pytestmark = pytest.mark.slow

AID = "02_cross_correlation"
STUDENTS = 2


def _server_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    pytest.importorskip("psycopg2", reason="no PostgreSQL driver (psycopg2) installed")
    bindir = _server_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (Debian's postgresql package) on this machine")
    run_as: list[str] = []
    owner = None
    if os.geteuid() == 0:  # initdb refuses to run as root
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to own the server")
        if not shutil.which("runuser"):
            pytest.skip("running as root without runuser to drop to the 'postgres' user")
        run_as = ["runuser", "-u", "postgres", "--"]
    home = Path(tempfile.mkdtemp(prefix="cnn-pg-"))
    data = home / "data"
    if owner is not None:
        os.chown(home, owner.pw_uid, owner.pw_gid)
    port = _free_port()

    def pg(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(run_as + list(args), capture_output=True, text=True, timeout=120, check=check)

    try:
        pg(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "grader", "-E", "UTF8", "--no-sync")
        pg(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(home / "server.log"), "-w", "-t", "60", "start",
           "-o", f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off")
    except subprocess.CalledProcessError as e:
        shutil.rmtree(home, ignore_errors=True)
        pytest.skip(f"could not start a PostgreSQL server: {(e.stderr or e.stdout).strip()[:300]}")
    try:
        pg(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "grader", "cnn")
        yield f"postgresql+psycopg2://grader@127.0.0.1:{port}/cnn"
    finally:
        pg(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop", check=False)
        shutil.rmtree(home, ignore_errors=True)
        stop_zygote()


def _grades(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_postgres_gradebook_matches_sqlite(postgres_url, tmp_path):
    """The same submissions graded with two workers into PostgreSQL and serially into SQLite
    give the same per-cell scores and the same grades.csv."""
    cfg = Config()
    cfg.Execute.timeout = 30
    roots = {}
    for name in ("postgres", "sqlite"):
        roots[name] = tmp_path / name
        make_submissions(roots[name], count=STUDENTS, assignments=[AID])

    pg = grade_course(roots["postgres"], jobs=2, feedback=False, report=False, config=cfg, db_url=postgres_url)
    lite = grade_course(roots["sqlite"], jobs=1, feedback=False, report=False, config=cfg)
    assert pg.failures == [] and lite.failures == []
    assert not (roots["postgres"] / "gradebook.db").exists(), "the PostgreSQL run must not fall back to SQLite"

    def cells(root: Path, **paths) -> dict[tuple[str, str], float]:
        return {(r["student"], r["cell"]): r["score"] for r in gradebook_rows(course_config(root, **paths))}

    on_pg = cells(roots["postgres"], db_url=postgres_url)
    on_lite = cells(roots["sqlite"])
    assert on_pg == on_lite
    assert len({s for s, _ in on_pg}) == STUDENTS
    assert all(score > 0 for score in on_pg.values()), "reference solutions must score on every graded cell"
    assert _grades(roots["postgres"] / "grades.csv") == _grades(roots["sqlite"] / "grades.csv")
