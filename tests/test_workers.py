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
