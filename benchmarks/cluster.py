"""Part: Dask's overhead per grading job (cnngrader.pipeline.cluster) against the local pool (workers.Workers).

The same trivial job, one at a time, through both: a job as cluster.make_job builds it (the solution notebook
of 02_cross_correlation as the submission's bytes), whose task returns that notebook as the JSON result a worker
sends back. So each round trip carries a real job's payload both ways, and no grading happens:
- the local pool: workers.Workers(2), the forkserver process pool of `make grade JOBS=2`;
- Dask: a `dask scheduler` and one `dask worker` started here on 127.0.0.1, with mutual TLS and certificates made
  here (certs.py), and a client as cluster.ClusterWorkers opens it.
The figure is the median, over repeats, of (Dask's median seconds per job - the pool's), in milliseconds.
"""
from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .report import Result, Skipped

REPO = Path(__file__).resolve().parents[1]
AID = "02_cross_correlation"
JOBS_PER_REPEAT = 30
REPEATS = 5
TARGET = "<= 50"  # milliseconds of Dask's overhead per job


def echo(job: dict) -> str:
    """The trivial task: the job's notebooks back, as the JSON result a worker returns."""
    notebooks = {Path(n).stem: data.decode() for n, data in job["files"].items() if n.endswith(".ipynb")}
    return json.dumps({"student": job["student"], "assignment": job["assignment"], "seconds": 0.0, "error": None,
                       "notebooks": notebooks})


def _job() -> dict:
    nb = REPO / "solutions" / AID / f"{AID}.ipynb"
    return {"version": 1, "student": "bench", "assignment": AID, "files": {nb.name: nb.read_bytes()},
            "secret": 1, "digests": ["0" * 64, "0" * 64], "settings": {}}


def _per_job(submit, job: dict, n: int) -> float:
    """Median seconds of n round trips, one job at a time."""
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        submit(job)
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(tmp: Path) -> tuple[str, list[subprocess.Popen]]:
    """A TLS scheduler and one worker on loopback; (address, processes)."""
    from cnngrader.pipeline.certs import make_certificates
    certs = make_certificates(tmp / "certs")
    port, dask = _free_port(), str(Path(sys.executable).parent / "dask")
    env = {**os.environ, "PYTHONPATH": str(REPO), "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True"}

    def tls(role: str) -> list[str]:
        return ["--tls-ca-file", str(certs / "ca.pem"), "--tls-cert", str(certs / f"{role}.pem"),
                "--tls-key", str(certs / f"{role}-key.pem")]
    log = open(tmp / "dask.log", "ab")
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--protocol", "tls",
                               "--no-dashboard", *tls("scheduler")], cwd=REPO, env=env, stdout=log, stderr=log)]
    address = f"tls://127.0.0.1:{port}"
    procs.append(subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
                                   "--host", "127.0.0.1", "--local-directory", str(tmp / "w"), *tls("worker")],
                                  cwd=REPO, env=env, stdout=log, stderr=log))
    return address, procs


def run(log=print) -> tuple[list[Result], list[Skipped]]:
    try:
        from distributed import Client

        from cnngrader.pipeline.cluster import security
        from cnngrader.pipeline.workers import Workers
    except ImportError as e:
        return [], [Skipped("cluster", f"distributed or cnngrader.pipeline is not importable ({e})")]
    job = _job()
    with tempfile.TemporaryDirectory(prefix="cnn-bench-cluster-") as tmp:
        address, procs = _start(Path(tmp))
        try:
            with Workers(2) as pool, Client(address, security=security(Path(tmp) / "certs"), timeout=60,
                                            set_as_default=False) as client:
                client.wait_for_workers(1, timeout=120)
                local = lambda j: pool.pool.submit(echo, j).result(timeout=60)  # noqa: E731 (one line each)
                remote = lambda j: client.submit(echo, j, pure=False).result(timeout=60)  # noqa: E731 (one line each)
                local(job), remote(job)  # warm: the pool's worker and the Dask worker have imported the task
                pairs = []
                for r in range(REPEATS):  # alternate which goes first
                    order = (("local", local), ("dask", remote)) if r % 2 == 0 else (("dask", remote), ("local", local))
                    pairs.append({name: _per_job(fn, job, JOBS_PER_REPEAT) for name, fn in order})
                    log(f"[cluster] repeat {r + 1}: local pool {pairs[-1]['local'] * 1000:.1f} ms/job, "
                        f"Dask over TLS {pairs[-1]['dask'] * 1000:.1f} ms/job")
        finally:
            for p in procs:
                p.kill()
                p.wait(timeout=30)
    overhead = statistics.median(p["dask"] - p["local"] for p in pairs) * 1000
    detail = {"repeats": pairs, "jobs_per_repeat": JOBS_PER_REPEAT, "payload_bytes": len(next(iter(
        job["files"].values())))}
    med = {k: statistics.median(p[k] for p in pairs) * 1000 for k in ("local", "dask")}
    return [Result("cluster", "ms per trivial job, local pool (workers.Workers, forkserver)", "-", med["local"], "ms"),
            Result("cluster", "ms per trivial job, Dask over mutual TLS on loopback", "-", med["dask"], "ms"),
            Result("cluster", "Dask's overhead per job over the local pool", "-", overhead, "ms", TARGET, detail)], []
