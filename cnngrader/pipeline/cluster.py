"""The execute step on a Dask cluster: `make grade CLUSTER=tls://scheduler:8786` (`grade --cluster`).

Each (student, assignment) job goes to a Dask worker (cluster_worker.py), which executes it sandboxed
exactly as workers.execute_one does here, and returns the executed notebooks as JSON text. This
process checks and writes them into work/executed, and the record step writes the gradebook as on
one machine: the gradebook has one writer, the machine that ran `make grade`, PostgreSQL or SQLite.

- Jobs are data (make_job): the submission's files, the run's secret, the job's digests and the run's
  settings. Results are JSON, size-capped (Cluster.max_result_bytes), parsed here with nbformat.
- Faults: a job lost with its worker is run again on another (the scheduler reschedules it; Dask's
  `retries` covers an exception of the grader itself). A student's timeout or crash is a result, not
  an exception, so it is never retried. Each result is recorded as it arrives, with its digests: after
  a scheduler crash, the next `make grade` grades exactly the submissions that were not recorded.
- Security: Dask's protocol unpickles control messages (dask/distributed #9283): whoever reaches the
  scheduler runs code on every worker. So a non-loopback address must be tls:// with the course's
  certificates (certs.py), mutual TLS required; check_address refuses anything else before connecting.
- GPU: the jobs of Cluster.gpu_assignments ask for the `GPU` resource a GPU worker advertises
  (`dask worker ... --resources GPU=1`).
"""
from __future__ import annotations

import ipaddress
import json
import logging
import queue
from collections import deque
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import nbformat
from traitlets import Float, Integer, List, Unicode
from traitlets.config import Config, Configurable

from cnngrader.pipeline import safefiles
from cnngrader.pipeline.cache import Submission
from cnngrader.pipeline.certs import cert_path, key_path
from cnngrader.pipeline.cluster_worker import JOB_VERSION, grade_job
from cnngrader.pipeline.config import CoursePaths, sandbox_enabled
from cnngrader.pipeline.workers import Outcome

log = logging.getLogger("cnngrader.pipeline")

MiB = 1 << 20


class ClusterRefused(ValueError):
    """An address or set-up the grader will not use; its message is one line, for the terminal."""


class ClusterLost(RuntimeError):
    """The scheduler went away mid-run; what was recorded stays, the next run grades the rest."""


class Cluster(Configurable):
    """Grading on a Dask cluster: where it is and how jobs are sent (c.Cluster.* in nbgrader_config.py)."""

    certificates = Unicode("", help="Folder of the course's certificates (certs.py): ca.pem, client.pem, "
                                    "client-key.pem. Default: <course>/certs.").tag(config=True)
    gpu_assignments = List(Unicode(), [], help="Assignments whose hidden tests must run on CUDA: their jobs "
                                               "ask for the GPU resource (workers started with --resources GPU=1)."
                           ).tag(config=True)
    retries = Integer(2, help="Extra tries of a job whose grader raised (a lost worker's jobs are rescheduled "
                              "by the scheduler, up to distributed.scheduler.allowed-failures).").tag(config=True)
    max_submission_bytes = Integer(64 * MiB, help="A submission's files, at most, sent to a worker.").tag(config=True)
    max_result_bytes = Integer(64 * MiB, help="A job's result (executed notebooks, JSON), at most.").tag(config=True)
    max_in_flight = Integer(256, help="Jobs submitted and not yet returned, at most: the scheduler holds their "
                                      "files, so a class of any size takes bounded memory.").tag(config=True)
    connect_timeout = Float(30.0, help="Seconds to reach the scheduler.").tag(config=True)


def check_address(address: str) -> tuple[str, bool]:
    """(address, whether it needs TLS) or ClusterRefused: tls://host:port anywhere; tcp:// to loopback only."""
    scheme, sep, rest = address.partition("://")
    if not sep or scheme not in ("tls", "tcp") or not rest:
        raise ClusterRefused(f"cluster address {address!r}: expected tls://host:port (or tcp://127.0.0.1:port)")
    host = rest.rsplit(":", 1)[0].strip("[]") if ":" in rest else rest
    if scheme == "tcp" and not _loopback(host):
        raise ClusterRefused(
            f"refusing plain tcp:// to {host}: Dask unpickles control messages (dask/distributed #9283), so anyone "
            "on the network could run code on every worker; use tls:// with the course's certificates "
            "(python -m cnngrader.pipeline.certs)")
    return address, scheme == "tls"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve elsewhere tomorrow


def certificates(cfg: Config) -> Path:
    """The folder of the course's certificates: c.Cluster.certificates, else <course>/certs."""
    folder = Cluster(config=cfg).certificates
    return Path(folder) if folder else CoursePaths.from_config(cfg).course_root / "certs"


def check_cluster(address: str, cfg: Config) -> None:
    """ClusterRefused unless a run may use this cluster: a safe address, sandboxed grading, the certificates."""
    _, tls = check_address(address)
    if not sandbox_enabled(cfg):
        raise ClusterRefused("--unsandboxed grades on this machine only: cluster workers always sandbox")
    if tls:
        security(certificates(cfg))


def security(folder: str | Path):
    """distributed.Security for the client: mutual TLS with the course's certificates, encryption required."""
    from distributed import Security  # distributed is imported only where a cluster is used: it is heavy
    folder = Path(folder)
    files = [cert_path(folder, "ca"), cert_path(folder, "client"), key_path(folder, "client")]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise ClusterRefused(f"missing certificate file(s) {', '.join(missing)}: make them with "
                             f"`python -m cnngrader.pipeline.certs {folder}` (see docs/cluster.md)")
    return Security(require_encryption=True, tls_ca_file=str(files[0]), tls_client_cert=str(files[1]),
                    tls_client_key=str(files[2]))


def settings(cfg: Config) -> dict:
    """The run's settings a worker applies (JSON values only; the paths are the worker's own)."""
    out: dict[str, dict] = {}
    for section, values in cfg.items():
        if section == "CourseDirectory" or not isinstance(values, dict):
            continue
        for key, value in values.items():
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                continue  # a class or a lazy value: it comes from nbgrader_config.py, the same on the worker
            out.setdefault(section, {})[key] = value
    out.get("GradingExecute", {}).pop("course_root", None)
    return out


def make_job(cfg: Config, paths: CoursePaths, sa: Submission, digests: tuple[str, str], run: dict,
             max_bytes: int) -> dict:
    """One job, as data: the submission's files (bytes), the run's secret and settings, its digests."""
    files, size = {}, 0
    for name, path in safefiles.tree(paths.submission(*sa)):
        data = path.read_bytes()
        size += len(data)
        if size > max_bytes:
            raise ClusterRefused(f"{sa[0]}/{sa[1]}: the submission is over {max_bytes} bytes")
        files[name] = data
    return {"version": JOB_VERSION, "student": sa[0], "assignment": sa[1], "files": files,
            "secret": int(cfg.GradingExecute.secret), "digests": list(digests), "settings": run}


def read_result(text: Any, sa: Submission, max_bytes: int) -> tuple[float, str | None, dict[str, Any]]:
    """(seconds, error, notebooks) of a job's JSON result, checked; ValueError when it is not one."""
    if not isinstance(text, str) or len(text) > max_bytes:
        raise ValueError(f"the result is not JSON text of at most {max_bytes} bytes")
    data = json.loads(text)
    if not isinstance(data, dict) or (data.get("student"), data.get("assignment")) != sa:
        raise ValueError("the result is for another submission")
    error, notebooks = data.get("error"), data.get("notebooks")
    if not (error is None or isinstance(error, str)) or not isinstance(notebooks, dict):
        raise ValueError("the result lacks its error or notebooks")
    out = {}
    for name, nb in notebooks.items():
        if not isinstance(name, str) or not name or "/" in name or name.startswith(".") or not isinstance(nb, str):
            raise ValueError(f"bad notebook name {name!r}")
        out[name] = nbformat.reads(nb, as_version=nbformat.NO_CONVERT)
    if not error and not out:
        error = "the worker returned no executed notebook"
    return float(data.get("seconds") or 0.0), error, out


class ClusterWorkers:
    """workers.Workers' interface on a Dask cluster: execute() sends each job to the cluster and yields
    its Outcome as it arrives; map() runs here (feedback is written where the gradebook is)."""

    def __init__(self, address: str, cfg: Config, digests: dict[Submission, tuple[str, str]]):
        self.address, self.tls = check_address(address)
        self.cfg, self.options = cfg, Cluster(config=cfg)
        self.digests = digests
        self.client = None

    def __enter__(self) -> ClusterWorkers:
        from distributed import Client  # only where a cluster is used: it is heavy
        kw = {"security": security(certificates(self.cfg))} if self.tls else {}
        try:
            self.client = Client(self.address, timeout=self.options.connect_timeout, set_as_default=False, **kw)
        except (OSError, TimeoutError) as e:
            raise ClusterLost(f"cannot reach the scheduler at {self.address}: {e}") from None
        return self

    def __exit__(self, *exc) -> None:
        if self.client is not None:
            self.client.close(timeout=10)

    def execute(self, cfg: Config, work: Path, tasks: Sequence[Submission], source_db: str) -> Iterator[Outcome]:
        """Each task's Outcome as soon as its result is in work/executed (source_db: the workers make their own)."""
        paths, run = CoursePaths.from_config(cfg), settings(cfg)
        todo, futures = deque(tasks), {}
        done: queue.Queue = queue.Queue()  # each future as it finishes (Dask calls back from its own thread)
        while todo or futures:
            while todo and len(futures) < self.options.max_in_flight:  # the scheduler holds a bounded batch
                sa = todo.popleft()
                try:
                    job = make_job(cfg, paths, sa, self.digests[sa], run, self.options.max_submission_bytes)
                except ClusterRefused as e:  # that submission is reported; the batch goes on
                    yield sa[0], sa[1], 0.0, str(e)
                    continue
                future = self._submit(job, sa)
                futures[future] = sa
                future.add_done_callback(done.put)
            if futures:
                future = self._next(done)
                yield self._outcome(future, futures.pop(future), work)
                future.release()  # its result is no longer held on the cluster

    def _submit(self, job: dict, sa: Submission):
        gpu = {"GPU": 1} if sa[1] in self.options.gpu_assignments else None
        key = f"cnngrade-{sa[0]}-{sa[1]}-{self.digests[sa][0][:16]}-{self.digests[sa][1][:16]}"
        return self.client.submit(grade_job, job, key=key, retries=self.options.retries, resources=gpu, pure=False)

    def _next(self, done: queue.Queue):
        while True:
            try:
                return done.get(timeout=5)
            except queue.Empty:
                if self.client.status in ("closing", "closed", "failed"):
                    raise self._lost("the client closed") from None

    def _lost(self, why: str) -> ClusterLost:
        return ClusterLost(f"lost the scheduler at {self.address} ({why}); what was recorded stays: "
                           "run `make grade` again to grade the rest")

    def _outcome(self, future, sa: Submission, work: Path) -> Outcome:
        try:
            text = future.result()
        except CancelledError as e:  # this run cancels nothing: the scheduler lost its jobs
            raise self._lost(f"{type(e).__name__}: {e}") from None
        except Exception as e:  # KilledWorker, a grader bug after its retries: reported, not recorded
            return sa[0], sa[1], 0.0, f"on the cluster: {type(e).__name__}: {e}"
        try:
            seconds, error, notebooks = read_result(text, sa, self.options.max_result_bytes)
        except ValueError as e:
            return sa[0], sa[1], 0.0, f"on the cluster: an unreadable result: {e}"
        folder = work / "executed" / sa[0] / sa[1]
        folder.mkdir(parents=True, exist_ok=True)
        for name, nb in notebooks.items():
            nbformat.write(nb, folder / f"{name}.ipynb")
        return sa[0], sa[1], seconds, error

    def map(self, fn: Callable, *iterables: Iterable) -> list:
        return [fn(*args) for args in zip(*iterables)]

