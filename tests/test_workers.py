"""The execute step's local pool (cnngrader/pipeline/workers.py): given the run's configuration, it starts every
worker at once, and each readies its kernels before its first job; a worker that cannot still takes jobs."""
from __future__ import annotations

import logging

from traitlets.config import Config

from cnngrader.pipeline import workers
from cnngrader.pipeline.sandbox import SandboxUnavailable


def test_a_worker_readies_its_kernels_with_the_runs_configuration_and_its_share(monkeypatch):
    calls = []

    def ready(cfg, parallel_jobs, wait):
        calls.append((cfg, parallel_jobs, wait))

    monkeypatch.setattr(workers, "ready_kernels", ready)
    cfg = Config()
    cfg.GradingExecute.kernel_threads = 3
    workers.warm_up(cfg, 4)
    with workers.Workers(1, cfg):  # alone: the zygote is started, not waited for
        pass
    assert calls == [(cfg, 4, True), (cfg, 1, False)]


def test_a_worker_that_cannot_ready_its_kernels_says_why_and_raises_nothing(monkeypatch, caplog):
    def refuse(cfg, parallel_jobs, wait):
        raise SandboxUnavailable("bwrap is not installed")

    monkeypatch.setattr(workers, "ready_kernels", refuse)
    with caplog.at_level(logging.WARNING, logger="cnngrader.pipeline"):
        workers.warm_up(Config(), 2)
    assert "could not ready its kernels in advance: SandboxUnavailable: " in caplog.text
    assert "bwrap is not installed" in caplog.text


def _unsandboxed() -> Config:
    cfg = Config()
    cfg.GradingExecute.sandbox = False  # the warm-up then only makes a kernel manager: no process to wait for
    return cfg


def test_a_pool_given_the_runs_configuration_starts_every_worker_before_any_job():
    with workers.Workers(2, _unsandboxed()) as pool:
        pool._started()
        assert len(pool.pool._processes) == 2
        assert pool.map(int, ["4", "5", "6"]) == [4, 5, 6]
    with workers.Workers(2) as lazy:  # no configuration: workers start as jobs come
        assert len(lazy.pool._processes) == 0


def test_a_warm_up_that_fails_in_a_worker_does_not_break_the_pool():
    cfg = _unsandboxed()
    cfg.GradingExecute.kernel_threads = "several"  # GradingExecute refuses it: the warm-up fails in each worker
    with workers.Workers(2, cfg) as pool:
        assert pool.map(int, ["1", "2"]) == [1, 2]


def test_the_assignments_that_took_longest_last_time_go_to_the_workers_first(tmp_path):
    from types import SimpleNamespace

    from cnngrader.pipeline.cache import Cache
    from cnngrader.pipeline.plan import Plan

    cache = Cache(SimpleNamespace(autograded=tmp_path))
    for student, aid, seconds in (("ann", "02_x", 0.9), ("bob", "02_x", 1.1), ("cid", "02_x", 30.0),
                                  ("ann", "06_y", 7.5), ("ann", "01_z", 0.4)):
        cache.graded((student, aid), ("s", "a"), seconds)
    assert cache.typical_seconds() == {"02_x": 1.1, "06_y": 7.5, "01_z": 0.4}
    todo = [(s, a) for s in ("bob", "ann") for a in ("01_z", "02_x", "06_y", "07_new")]
    # never timed first (it may be the longest), then 7.5 s, 1.1 s (the median), 0.4 s; students in order
    assert Plan(todo).in_grading_order(cache.typical_seconds()) == [
        ("ann", "07_new"), ("bob", "07_new"), ("ann", "06_y"), ("bob", "06_y"),
        ("ann", "02_x"), ("bob", "02_x"), ("ann", "01_z"), ("bob", "01_z")]
    assert Plan(todo).in_grading_order() == sorted(todo, key=lambda sa: (sa[1], sa[0]))  # a first run


def test_entries_the_durations_cannot_be_read_from_are_ignored(tmp_path):
    import json
    from types import SimpleNamespace

    from cnngrader.pipeline.cache import Cache

    cache = Cache(SimpleNamespace(autograded=tmp_path))
    cache.file.write_text(json.dumps({"ann/02_x": {"seconds": 2.0}, "bob/02_x": {"seconds": "slow"},
                                      "cid/06_y": ["not", "a", "dict"], "no-slash": {"seconds": 9.0},
                                      "dan/06_y": {"submission": "s"}}))
    assert cache.typical_seconds() == {"02_x": 2.0}
    cache.file.write_text("{ torn")
    assert cache.typical_seconds() == {}
