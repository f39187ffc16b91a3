"""The record step's shared gradebook engine and once-checked metadata schema (record_cache.py) write the
gradebook plain nbgrader writes: the same batch, recorded by `grade_course` (one Recorder, shared engines) and
recorded again one submission at a time by nbgrader as shipped (a fresh interpreter where nothing is patched),
gives the same score and comment in every grade cell, the same grades.csv and the same autograded notebooks.
The execute step shares engines too (workers.shared_engines): one per process and private gradebook copy.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from types import SimpleNamespace

import jsonschema
import nbformat
import pytest
from conftest import REPO
from nbgrader.api import Gradebook
from nbtools import with_cells, write_submissions
from sqlalchemy import text as sqlalchemy_text
from traitlets.config import Config

from cnngrader.pipeline import record, record_cache, workers
from cnngrader.pipeline.grade import grade_course, make_submissions, solution_submission
from cnngrader.pipeline.kernel_start import stop_zygote
from cnngrader.pipeline.report import gradebook_rows

AIDS = ["01_fc_to_conv", "02_cross_correlation"]
OFF_BY_ONE = '''def corr2d(X, K):
    h, w = K.shape
    Y = X.new_zeros((X.shape[0] - h, X.shape[1] - w))
    for a in range(h):
        for b in range(w):
            Y += X[a:a + Y.shape[0], b:b + Y.shape[1]] * K[a, b]
    return Y
'''

# nbgrader as shipped: one Autograde app per submission, each Gradebook with its own engine
PLAIN = '''
import sys
from pathlib import Path

import nbgrader.api

from cnngrader.pipeline.cache import Cache
from cnngrader.pipeline.config import CoursePaths
from cnngrader.pipeline.export import export_grades
from cnngrader.pipeline.grade import run_config
from cnngrader.pipeline.plan import plan, ready_gradebook
from cnngrader.pipeline.record import record_one

root, work = Path(sys.argv[1]), Path(sys.argv[2])
cfg = run_config(root)
where = CoursePaths.from_config(cfg)
planned = plan(where, Cache(where), force=True)
ready_gradebook(cfg, where, planned)
for sid, aid in planned.todo:
    error = record_one(cfg, work, sid, aid)
    assert error is None, error
assert nbgrader.api.create_engine.__module__.startswith("sqlalchemy"), "nbgrader was patched"
export_grades(where)
print(len(planned.todo))
'''


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    shared = tmp_path_factory.mktemp("shared")
    make_submissions(shared, count=2, assignments=AIDS, prefix="rec")
    blank = {aid: nbformat.read(REPO / "exercises" / aid / f"{aid}.ipynb", as_version=4) for aid in AIDS}
    wrong = with_cells(solution_submission(AIDS[1]), corr2d=OFF_BY_ONE)
    write_submissions(shared, {"blank": blank, "offbyone": {AIDS[1]: wrong}})
    work = tmp_path_factory.mktemp("work")
    real = record.record_one

    def keep(cfg, run_work, student, assignment):  # the executed copies, for the plain recording below
        shutil.copytree(run_work / "executed" / student / assignment, work / "executed" / student / assignment)
        return real(cfg, run_work, student, assignment)

    c = Config()
    c.Execute.timeout = 10
    c.GradingExecute.secret = 20261207
    patch = pytest.MonkeyPatch()
    patch.setattr(record, "record_one", keep)
    engines: list[str] = []
    made = record_cache.sqlalchemy.create_engine

    def create_engine(url, *args, **kwargs):
        engines.append(str(url))
        return made(url, *args, **kwargs)

    patch.setattr(record_cache.sqlalchemy, "create_engine", create_engine)
    try:
        result = grade_course(shared, jobs=1, config=c, feedback=False, report=False, progress="off")
    finally:
        patch.undo()
        stop_zygote()
    plain = tmp_path_factory.mktemp("plain")
    shutil.copytree(shared / "submitted", plain / "submitted")
    run = subprocess.run([sys.executable, "-c", PLAIN, str(plain), str(work)], cwd=REPO, capture_output=True,
                         text=True, timeout=600, env={**os.environ, "CNNGRADER_COURSE": str(REPO)})
    assert run.returncode == 0, run.stderr[-3000:]
    return SimpleNamespace(result=result, shared=shared, plain=plain, recorded=int(run.stdout.split()[-1]),
                           engines=engines)


def test_executing_the_batch_made_one_engine_for_the_gradebook_copy(recorded):
    copies = [url for url in recorded.engines if "gradebook-worker" in url]
    assert len(copies) == 1, recorded.engines  # seven submissions, about ten Gradebooks each, one engine
    assert copies[0] != f"sqlite:///{recorded.shared / 'gradebook.db'}"


def test_the_batch_is_recorded_in_full(recorded):
    assert recorded.result.failures == []
    assert len(recorded.result.submissions) == recorded.recorded == 7
    assert {s for s, _ in recorded.result.submissions} == {"rec01", "rec02", "blank", "offbyone"}


def test_every_grade_cell_has_the_score_and_comment_plain_recording_gives(recorded):
    rows = gradebook_rows(Config({"CourseDirectory": {"db_url": f"sqlite:///{recorded.shared / 'gradebook.db'}",
                                                      "root": str(recorded.shared)}}))
    plain = gradebook_rows(Config({"CourseDirectory": {"db_url": f"sqlite:///{recorded.plain / 'gradebook.db'}",
                                                       "root": str(recorded.plain)}}))
    assert rows == plain
    scores = {(r["student"], r["assignment"]): 0.0 for r in rows}
    for r in rows:
        scores[r["student"], r["assignment"]] += r["score"]
    # the batch is not uniform: full marks, nothing, and a wrong corr2d between them
    assert scores["blank", AIDS[1]] < scores["offbyone", AIDS[1]] < scores["rec01", AIDS[1]]


def test_grades_csv_and_autograded_notebooks_are_those_of_plain_recording(recorded):
    assert (recorded.shared / "grades.csv").read_text() == (recorded.plain / "grades.csv").read_text()
    ours = sorted(p.relative_to(recorded.shared) for p in (recorded.shared / "autograded").rglob("*.ipynb"))
    theirs = sorted(p.relative_to(recorded.plain) for p in (recorded.plain / "autograded").rglob("*.ipynb"))
    assert ours == theirs and len(ours) == 7
    for rel in ours:
        assert (recorded.shared / rel).read_text() == (recorded.plain / rel).read_text(), rel


def test_shared_engines_give_one_engine_per_url_only_while_active(tmp_path):
    url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    shared = record_cache.SharedEngines()
    with shared.active():
        with Gradebook(url) as one, Gradebook(url) as two:
            assert one.engine is two.engine
    with Gradebook(url) as three:
        assert three.engine is not one.engine  # outside active(): nbgrader's own engine
    shared.close()
    assert shared.engines == {}
    shared.close()  # twice is fine


def test_a_process_keeps_the_engines_of_one_gradebook_copy_at_a_time(tmp_path):
    first, second = (f"sqlite:///{tmp_path / name}" for name in ("a.db", "b.db"))
    try:
        one = workers.shared_engines(first)
        assert workers.shared_engines(first) is one
        with one.active(), Gradebook(first) as gb:
            assert one.engines and gb.engine is next(iter(one.engines.values()))
        two = workers.shared_engines(second)
        assert two is not one and one.engines == {}  # the other copy's engine is closed
    finally:
        workers.release_engines()
    assert two.engines == {}


@pytest.mark.parametrize("meta", [
    {"schema_version": 3, "grade": True, "solution": False, "locked": True, "points": 1, "grade_id": "a"},
    {"schema_version": 3, "grade": True, "solution": False, "locked": True, "points": "one", "grade_id": "a"},
    {"schema_version": 3, "grade": True},
    {"schema_version": 3, "grade": "yes", "solution": False, "locked": 1, "grade_id": 7},
])
def test_the_once_checked_schema_accepts_and_rejects_as_jsonschema_does(meta):
    from nbgrader.nbgraderformat.v3 import MetadataValidatorV3  # nbgrader's schema, as CheckCellMetadata loads it

    schema = MetadataValidatorV3().schema
    try:
        jsonschema.validate(meta, schema)
        expected = None
    except jsonschema.ValidationError as error:
        expected = (error.message, list(error.path))
    try:
        record_cache.validate_metadata(meta, schema)
        got = None
    except jsonschema.ValidationError as error:
        got = (error.message, list(error.path))
    assert got == expected
    assert (expected is None) == (meta.get("points") == 1)  # only the first is valid metadata


def test_a_new_gradebook_is_stamped_with_the_revision_that_alembic_heads_gives(tmp_path, monkeypatch):
    import nbgrader.api
    from nbgrader.dbutil import _temp_alembic_ini  # how nbgrader's own get_alembic_version calls alembic

    from cnngrader.pipeline import config

    with _temp_alembic_ini(f"sqlite:///{tmp_path / 'unused.db'}") as ini:
        heads = subprocess.run([os.path.join(os.path.dirname(sys.executable), "alembic"), "-c", ini, "heads"],
                               capture_output=True, text=True, timeout=120, check=True).stdout
    assert config.alembic_head() == heads.split("\n")[0].split(" ")[0]

    def no_subprocess(*args, **kwargs):
        raise AssertionError(f"nbgrader ran {args}")

    monkeypatch.setattr(nbgrader.api.sp, "check_output", no_subprocess)
    with Gradebook(f"sqlite:///{tmp_path / 'gradebook.db'}") as gb:  # made here, not by a subprocess
        stamped = gb.db.execute(sqlalchemy_text("SELECT version_num FROM alembic_version")).scalar_one()
    assert stamped == config.alembic_head()
