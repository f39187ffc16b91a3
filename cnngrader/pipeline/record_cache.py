"""What the record and execute steps keep from one submission to the next, so that nbgrader's own work
costs less per notebook.

Profiling record.record_one (one nbgrader Autograde per submission, replayed) showed two costs that do
not depend on the submission at all:
- nbgrader's Gradebook makes a new SQLAlchemy engine each time it is opened (about eleven times per
  notebook: the converter, RestoreCells, DropForgedClaims, SaveAutoGrades, AssignLatePenalties, ...),
  and an engine compiles every query afresh: a third of the time went to compiling the same SELECTs.
  `SharedEngines` gives every Gradebook opened while it is active one engine per database URL.
  The sessions, their queries and their commits are nbgrader's own, unchanged: only the compiled
  statements and the connection pool are reused. Executing a notebook opens eleven more Gradebooks on
  the worker's private copy (workers.shared_engines): A2's solution took 0.97 s instead of 1.05.
- CheckCellMetadata (twice per notebook) validates each cell's nbgrader metadata with
  jsonschema.validate, which checks the schema itself again on every call: another third.
  `install()` makes nbgrader's validator check the schema once and reuse the validator; a cell
  is accepted or rejected exactly as before, with the same error (jsonschema's best match).
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

import jsonschema
import sqlalchemy
from jsonschema.exceptions import best_match

# the engines of the SharedEngines active in this thread, or None: nbgrader's own behaviour
_ACTIVE: ContextVar[dict | None] = ContextVar("cnngrader_shared_engines", default=None)


def _create_engine(url, *args, **kwargs):
    """sqlalchemy.create_engine, or the engine already made for `url` while SharedEngines is active."""
    engines = _ACTIVE.get()
    if engines is None:
        return sqlalchemy.create_engine(url, *args, **kwargs)
    key = (str(url), tuple(args), tuple(sorted(kwargs.items())))
    if key not in engines:
        engines[key] = sqlalchemy.create_engine(url, *args, **kwargs)
    return engines[key]


class SharedEngines:
    """One SQLAlchemy engine per database URL for the Gradebooks opened inside `with shared.active():`;
    close() disposes of them (their pooled connections). Used by one recorder; safe to close twice."""

    def __init__(self) -> None:
        self.engines: dict = {}
        install()

    @contextmanager
    def active(self) -> Iterator[None]:
        token = _ACTIVE.set(self.engines)
        try:
            yield
        finally:
            _ACTIVE.reset(token)

    def close(self) -> None:
        for engine in self.engines.values():
            engine.dispose()
        self.engines.clear()


_VALIDATORS: dict[str, jsonschema.protocols.Validator] = {}


def validate_metadata(instance, schema) -> None:
    """jsonschema.validate(instance, schema) with the schema checked once per schema, not once per call."""
    key = json.dumps(schema, sort_keys=True)
    validator = _VALIDATORS.get(key)
    if validator is None:
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        validator = _VALIDATORS[key] = cls(schema)
    error = best_match(validator.iter_errors(instance))
    if error is not None:
        raise error


class _Jsonschema:
    """The jsonschema module as nbgrader's metadata validator sees it: validate() checks the schema once."""

    def __getattr__(self, name):
        return getattr(jsonschema, name)

    validate = staticmethod(validate_metadata)


def install() -> None:
    """Put the shared engines and the once-checked schema in nbgrader's place (idempotent; without an
    active SharedEngines, nbgrader makes its engines as before)."""
    import nbgrader.api as api  # nbgrader's internals, patched here (get_alembic_version: config.py, at import)
    import nbgrader.nbgraderformat.common as common  # likewise

    api.create_engine = _create_engine
    if not isinstance(common.jsonschema, _Jsonschema):
        common.jsonschema = _Jsonschema()
