"""A scaling model: the wall time to grade a large class on a cluster, computed from the per-job costs that
jobs.py measured in the same run, and the scheduler's share of it.

The model (one job per core, every job the same size, the jobs spread evenly):
- compute: each of the W x C cores grades ceil(N / (W x C)) notebooks, each costing the measured
  core-seconds per notebook (all cores busy) plus the per-job dispatch overhead;
- scheduler: the scheduler handles tasks one after another, `scheduler_s_per_task` each (Dask's own
  figure: "Each task suffers about 1ms of overhead", https://distributed.dask.org/en/latest/), N in all;
- record: the machine that runs `make grade` records every result into the gradebook itself, one after
  another (record.py), at the recording thread's measured CPU time per notebook (on a cluster the head only
  records; the wall time measured on this machine also waits for the cores its kernels use).
The three overlap; the slowest bounds the run, and the other two add one notebook each (the first
result must be computed before it is recorded, the last recorded after it is computed):
wall = max(compute + record_1, record + compute_1, scheduler + compute_1 + record_1).
Not modelled: what a run does before and after grading (prepare, feedback, grades.csv, reports; `jobs`
reports their seconds in its detail), the network, and stragglers (a notebook at its 600 s limit).

The per-job overhead on a worker is a parameter: by default the local pool's measured cost per job
(dispatch_overhead); give the Dask job overhead measured on a cluster with `--job-overhead`.
"""
from __future__ import annotations

import math
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

from .report import Result

DASK_SCHEDULER_S_PER_TASK = 0.001  # https://distributed.dask.org/en/latest/: "about 1ms of overhead" per task
STUDENTS, NOTEBOOKS_PER_STUDENT = 10_000, 6
WORKERS = (1, 10, 50)
CORES_PER_WORKER = 8
OUT = Path(__file__).resolve().parent / "results" / "scaling.md"


def _nothing(*args) -> int:
    """A job that does nothing (its arguments are the real job's: their pickling is part of the cost)."""
    return len(args)


def dispatch_overhead(jobs: int = 2, count: int = 200, payload: object = None) -> float:
    """Median seconds from submit to result of a job that does nothing, in a pool like workers.Workers
    (forkserver): the local pool's own cost per job. `payload` travels with each job (default: the course's
    grading configuration, as execute_one's jobs carry it)."""
    if payload is None:
        from cnngrader.pipeline.grade import run_config

        from .machine import REPO

        payload = run_config(REPO)
    ctx = get_context("forkserver") if sys.platform.startswith("linux") else get_context("spawn")
    samples = []
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        for _ in range(jobs * 2):  # start the workers before timing
            pool.submit(_nothing).result()
        for _ in range(count):
            t0 = time.perf_counter()
            pool.submit(_nothing, payload, "/tmp/work", jobs, "student01", "01_fc_to_conv").result()
            samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


@dataclass
class Model:
    """Per-notebook costs in seconds."""

    core_s_per_notebook: float
    record_s_per_notebook: float
    job_overhead_s: float
    scheduler_s_per_task: float = DASK_SCHEDULER_S_PER_TASK

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"Model: {name} must be a finite number of seconds >= 0, not {value!r}")

    def wall(self, workers: int, cores: int = CORES_PER_WORKER,
             notebooks: int = STUDENTS * NOTEBOOKS_PER_STUDENT) -> dict[str, float | str]:
        """Seconds of each stage, the wall time, what bounds it and the scheduler's share of it."""
        if workers < 1 or cores < 1 or notebooks < 1:
            raise ValueError(f"workers, cores and notebooks must be >= 1, not {workers}, {cores}, {notebooks}")
        one = self.core_s_per_notebook + self.job_overhead_s
        stages = {
            "compute": math.ceil(notebooks / (workers * cores)) * one,
            "record": notebooks * self.record_s_per_notebook,
            "scheduler": notebooks * self.scheduler_s_per_task,
        }
        ends = {
            "compute": stages["compute"] + self.record_s_per_notebook,
            "record": stages["record"] + one,
            "scheduler": stages["scheduler"] + one + self.record_s_per_notebook,
        }
        bound = max(ends, key=ends.get)
        wall = ends[bound]
        return {**stages, "wall": wall, "bound": bound, "scheduler_share": stages["scheduler"] / wall}


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 360 else f"{seconds:.0f} s"


def _record_source(costs: dict) -> str:
    """Which recording cost the model uses. On a cluster the head only records, so its CPU time is the cost, where
    measured; the wall time measured here also waits for the cores that this machine's kernels were using."""
    cpu = costs.get("record_cpu_s_per_notebook")
    if cpu is None:
        return "the wall time measured here"
    return (f"the recording thread's CPU time, as on a head with a core of its own; the wall time measured here, "
            f"waits for the kernels' cores included, was {costs['record_s_per_notebook']:.2f} s")


def table(model: Model, costs: dict, workers=WORKERS, cores: int = CORES_PER_WORKER) -> str:
    """The model's markdown table for 10,000 students x 6 notebooks, with the measured inputs above it."""
    n = STUDENTS * NOTEBOOKS_PER_STUDENT
    lines = [
        f"# Scaling model: {STUDENTS:,} students x {NOTEBOOKS_PER_STUDENT} notebooks ({n:,} notebooks)",
        "",
        "Computed by `python -m benchmarks --only scaling` from costs measured in the same run "
        f"({costs['notebooks']} notebooks, JOBS={costs['jobs']} against JOBS=1 on {costs.get('cores')} cores, "
        f"load average {costs['load_average']}):",
        "",
        f"- core-seconds per notebook, every core busy: {model.core_s_per_notebook:.2f} s "
        f"(one notebook alone, JOBS=1: {costs['execute_s_per_notebook']:.2f} s; "
        f"JOBS={costs['jobs']} speedup {costs['serial_s'] / costs['parallel_s']:.2f}x)",
        f"- per-job overhead on a worker: {model.job_overhead_s * 1000:.1f} ms ({costs['job_overhead_source']})",
        f"- scheduler, serial per task: {model.scheduler_s_per_task * 1000:.1f} ms "
        f"({costs['scheduler_source']})",
        f"- recording on the machine that runs `make grade`, serial per notebook: "
        f"{model.record_s_per_notebook:.2f} s ({_record_source(costs)})",
        "",
        f"| workers ({cores} cores each) | compute | recording (head, serial) | scheduler | wall time | bound by "
        "| scheduler's share |",
        "|---:|---:|---:|---:|---:|---|---:|",
    ]
    for w in workers:
        m = model.wall(w, cores, n)
        lines.append(f"| {w} | {_hours(m['compute'])} | {_hours(m['record'])} | {_hours(m['scheduler'])} "
                     f"| {_hours(m['wall'])} | {m['bound']} | {m['scheduler_share']:.2%} |")
    return "\n".join(lines) + "\n"


def run(costs, job_overhead: float | None = None, scheduler_overhead: float | None = None,
        out: Path = OUT, log=print) -> list[Result]:
    """The model's rows from jobs.run's Costs; writes its markdown table to `out`."""
    record_s = costs.record_s_per_notebook if costs.record_cpu_s_per_notebook is None \
        else costs.record_cpu_s_per_notebook
    model = Model(core_s_per_notebook=costs.core_s_per_notebook, record_s_per_notebook=record_s,
                  job_overhead_s=costs.dispatch_s if job_overhead is None else job_overhead,
                  scheduler_s_per_task=DASK_SCHEDULER_S_PER_TASK if scheduler_overhead is None
                  else scheduler_overhead)
    inputs = {**asdict(costs), "cores": os.cpu_count(),
              "job_overhead_source": "the local pool's measured cost per job" if job_overhead is None
              else "given with --job-overhead",
              "scheduler_source": "Dask's documented ~1 ms per task, https://distributed.dask.org/en/latest/"
              if scheduler_overhead is None else "given with --scheduler-overhead"}
    text = table(model, inputs)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(out)
    log(f"[scaling] written to {out}")
    log(text)
    rows = []
    for w in WORKERS:
        m = model.wall(w)
        detail = {"model": asdict(model), "stages": m, "inputs": inputs, "table": str(out)}
        rows.append(Result("scaling", f"wall time, {STUDENTS:,} students x {NOTEBOOKS_PER_STUDENT} notebooks on {w} "
                           f"{CORES_PER_WORKER}-core worker(s) (bound by {m['bound']})", "-", m["wall"], "s", None,
                           detail))
        rows.append(Result("scaling", f"scheduler's share of it, {w} worker(s)", "-", 100 * m["scheduler_share"],
                           "%", None, detail))
    return rows
