"""Grading on a Dask cluster (cnngrader/pipeline/cluster.py, cluster_worker.py, certs.py): a real `dask scheduler`
and `dask worker` processes on 127.0.0.1, mutual TLS with certificates made here.

- the cluster's gradebook, grades.csv and feedback equal local grading's of the same submissions;
- a worker SIGKILLed mid-batch: its job runs again on the other worker, every grade as before;
- the scheduler killed mid-batch: the run stops, and the next one grades exactly the rest;
- plain tcp:// to another host, a missing certificate, a client without the course's certificate: refused.
Batches are tiny (two students of one or two cheap assignments); every process is killed in a finally.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
from conftest import REPO
from nbtools import cell, write_submissions
from traitlets.config import Config

from cnngrader.pipeline import cluster
from cnngrader.pipeline.certs import make_certificates
from cnngrader.pipeline.cluster import ClusterLost, ClusterRefused, check_address, read_result
from cnngrader.pipeline.grade import course_config, grade_course
from cnngrader.pipeline.kernel_start import stop_zygote
from cnngrader.pipeline.report import gradebook_rows

pytestmark = pytest.mark.slow

DASK = Path(sys.executable).parent / "dask"
AIDS = ["01_fc_to_conv"]
SECRET = 20261207  # one secret for every run, so that the local and the cluster runs draw the same cases
BROKEN_FC = "def fc_param_count(in_features, out_features, bias=True):\n    return 0\n"


def config() -> Config:
    c = Config()
    c.Execute.timeout = 30
    c.GradingExecute.secret = SECRET
    return c


def submissions(aids=AIDS) -> dict:
    """good: the solution; bad: fc_param_count broken (a score of 0 there, the rest full marks)."""
    out: dict = {"good": {}, "bad": {}}
    for aid in aids:
        nb = nbformat.read(REPO / "solutions" / aid / f"{aid}.ipynb", as_version=4)
        out["good"][aid] = nb
        bad = nbformat.from_dict(json.loads(json.dumps(nb)))
        if aid == "01_fc_to_conv":
            cell(bad, "fc_param_count").source = BROKEN_FC
        out["bad"][aid] = bad
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, what: str, step: float = 0.2):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def tls(certs: Path, role: str) -> list[str]:
    return ["--tls-ca-file", str(certs / "ca.pem"), "--tls-cert", str(certs / f"{role}.pem"),
            "--tls-key", str(certs / f"{role}-key.pem")]


def scheduler_command(certs: Path, port: int) -> list[str]:
    """docs/cluster.md's scheduler command, on loopback with the test's port."""
    return ["scheduler", "--host", "127.0.0.1", "--port", str(port), "--protocol", "tls", "--no-dashboard",
            *tls(certs, "scheduler")]


def worker_command(address: str, name: str, certs: Path, scratch: Path) -> list[str]:
    """The command line of `make grade-worker` (one process, no nanny: the test kills the worker itself)."""
    return ["worker", address, "--name", name, "--nthreads", "1", "--no-nanny", "--no-dashboard", "--host",
            "127.0.0.1", "--local-directory", str(scratch / name), "--preload", "cnngrader.pipeline.cluster_worker",
            *tls(certs, "worker")]


class LocalCluster:
    """A scheduler and named workers as subprocesses of .venv/bin/dask, on 127.0.0.1 with TLS."""

    def __init__(self, certs: Path, scratch: Path):
        self.certs, self.scratch, self.port = certs, scratch, free_port()
        self.address = f"tls://127.0.0.1:{self.port}"
        self.env = {**os.environ, "CNNGRADER_COURSE": str(REPO), "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True"}
        self.scheduler: subprocess.Popen | None = None
        self.workers: dict[str, subprocess.Popen] = {}

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen:
        out = open(self.scratch / log, "ab")
        return subprocess.Popen([str(DASK), *args], cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)

    def start_scheduler(self) -> None:
        self.scheduler = self._spawn(scheduler_command(self.certs, self.port), "scheduler.log")

    def start_worker(self, name: str) -> None:
        self.workers[name] = self._spawn(worker_command(self.address, name, self.certs, self.scratch), f"{name}.log")

    def client(self):
        from distributed import Client
        return Client(self.address, security=cluster.security(self.certs), timeout=60, set_as_default=False)

    def wait_for_workers(self, n: int) -> None:
        with self.client() as c:  # the scheduler is up once it answers
            if n:
                c.wait_for_workers(n, timeout=240)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.scratch.glob("*.log"))

    def kill(self, proc: subprocess.Popen | None) -> None:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the worker and its sandboxed kernels (their own session)
            proc.wait(timeout=30)

    def stop(self) -> None:
        for proc in [*self.workers.values(), self.scheduler]:
            self.kill(proc)


@contextmanager
def running_cluster(certs: Path, scratch: Path, workers=("w1", "w2")):
    c = LocalCluster(certs, scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        c.start_scheduler()
        for name in workers:
            c.start_worker(name)
        c.wait_for_workers(len(workers))
        yield c
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.stop()


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("certs"))


def graded_dir(tmp_path_factory, name: str, aids=AIDS) -> Path:
    root = tmp_path_factory.mktemp(name)
    write_submissions(root, submissions(aids))
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory, certs):
    local = graded_dir(tmp_path_factory, "local")
    remote = graded_dir(tmp_path_factory, "remote")
    out = SimpleNamespace(local_root=local, remote_root=remote)
    out.local = grade_course(local, config=config())
    stop_zygote()
    cfg = config()
    cfg.Cluster.certificates = str(certs)
    with running_cluster(certs, tmp_path_factory.mktemp("cluster")) as c:
        out.remote = grade_course(remote, config=cfg, cluster=c.address)
    return out


def test_the_cluster_grades_as_this_machine_does(runs):
    assert not runs.local.failures and not runs.remote.failures, (runs.local.failures, runs.remote.failures)
    assert sorted(runs.remote.submissions) == sorted(runs.local.submissions) == [("bad", a) for a in AIDS] + [
        ("good", a) for a in AIDS]
    rows_l, rows_r = gradebook_rows(course_config(runs.local_root)), gradebook_rows(course_config(runs.remote_root))
    assert rows_r == rows_l and len(rows_r) > 4
    by = {(r["student"], r["cell"]): r["score"] for r in rows_r}
    assert by[("bad", "hidden_fc_param_count")] == 0 < by[("good", "hidden_fc_param_count")]
    assert (runs.remote_root / "grades.csv").read_text() == (runs.local_root / "grades.csv").read_text()
    pages = sorted(p.relative_to(runs.remote_root) for p in (runs.remote_root / "feedback").rglob("*.html"))
    assert len(pages) == len(runs.remote.submissions)
    for rel in pages:
        assert (runs.remote_root / rel).read_bytes() == (runs.local_root / rel).read_bytes(), f"differs: {rel}"


def test_a_worker_killed_mid_batch_loses_no_submission(runs, tmp_path_factory, certs):
    root = graded_dir(tmp_path_factory, "killed")
    cfg = config()
    cfg.Cluster.certificates = str(certs)
    with running_cluster(certs, tmp_path_factory.mktemp("cluster-killed")) as c:
        result: dict = {}
        thread = threading.Thread(target=lambda: result.update(r=grade_course(root, config=cfg, cluster=c.address)))
        thread.start()
        try:
            with c.client() as watch:  # kill a worker while it executes a job
                def busy():
                    names = {a: w["name"] for a, w in watch.scheduler_info()["workers"].items()}
                    return next((names[a] for a, keys in watch.processing().items() if keys), None)
                victim = wait_until(busy, 240, "a worker to start a job")
                time.sleep(1.0)  # well inside the job: its kernel is up
                c.kill(c.workers[victim])
        finally:
            thread.join(timeout=400)
        assert not thread.is_alive(), c.logs()
    graded = result["r"]
    assert not graded.failures, graded.failures
    assert gradebook_rows(course_config(root)) == gradebook_rows(course_config(runs.local_root))
    assert (root / "grades.csv").read_text() == (runs.local_root / "grades.csv").read_text()


def test_after_the_scheduler_dies_the_next_run_grades_exactly_the_rest(tmp_path_factory, certs):
    aids = ["01_fc_to_conv", "02_cross_correlation"]
    root = graded_dir(tmp_path_factory, "crash", aids)
    everything = {(s, a) for s in ("bad", "good") for a in aids}
    cache = root / "autograded" / ".cnngrader.json"
    cfg = config()
    cfg.Cluster.certificates = str(certs)
    scratch = tmp_path_factory.mktemp("cluster-crash")
    with running_cluster(certs, scratch, workers=("w1",)) as c:
        errors: list = []

        def run():
            try:
                grade_course(root, config=cfg, cluster=c.address)
            except BaseException as e:  # checked below
                errors.append(e)
        thread = threading.Thread(target=run)
        thread.start()
        try:
            wait_until(lambda: cache.is_file() and json.loads(cache.read_text()), 400, "the first recorded result")
            c.kill(c.scheduler)
        finally:
            thread.join(timeout=200)
        assert not thread.is_alive(), c.logs()
    assert len(errors) == 1 and isinstance(errors[0], ClusterLost), errors
    recorded = {tuple(k.split("/")) for k in json.loads(cache.read_text())}
    assert 0 < len(recorded) < len(everything)
    with running_cluster(certs, scratch, workers=("w1",)) as c:
        second = grade_course(root, config=cfg, cluster=c.address)
    assert set(second.submissions) == everything - recorded
    assert set(second.up_to_date) == recorded
    assert not second.failures, second.failures
    assert {tuple(k.split("/")) for k in json.loads(cache.read_text())} == everything


# -- refusals: no server needed, or one that must refuse ------------------------------------------------------
@pytest.mark.parametrize("address", ["tcp://192.0.2.1:8786", "tcp://scheduler.example.org:8786", "tcp://[::2]:8786",
                                     "tcp://0.0.0.0:8786"])
def test_plain_tcp_to_another_host_is_refused(address):
    with pytest.raises(ClusterRefused, match=r"refusing plain tcp:// .*#9283.*tls://"):
        check_address(address)


@pytest.mark.parametrize("address", ["tls://scheduler.example.org:8786", "tls://10.1.2.3:8786",
                                     "tcp://127.0.0.1:8786", "tcp://localhost:8786", "tcp://[::1]:8786"])
def test_tls_anywhere_and_tcp_on_loopback_are_accepted(address):
    assert check_address(address) == (address, address.startswith("tls"))


@pytest.mark.parametrize("address", ["192.0.2.1:8786", "ws://192.0.2.1:8786", "tls://"])
def test_other_addresses_are_refused(address):
    with pytest.raises(ClusterRefused, match="expected tls://host:port"):
        check_address(address)


def test_make_grade_refuses_plain_tcp_with_one_line(tmp_path):
    venv, env = Path(sys.executable).parents[1], {**os.environ, "CNNGRADER_COURSE": str(REPO)}
    proc = subprocess.run(["make", "-s", "grade", "CLUSTER=tcp://192.0.2.1:8786", f"VENV={venv}"], cwd=REPO,
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() + proc.stdout.splitlines() if "refusing" in line]
    assert len(lines) == 1 and "#9283" in lines[0] and "tls://" in lines[0], proc.stdout + proc.stderr


def test_make_passes_the_cluster_variables():
    def dry(*args: str) -> str:
        return subprocess.run(["make", "-n", *args], cwd=REPO, capture_output=True, text=True, timeout=60).stdout
    grade = dry("grade", "CLUSTER=tls://grader1.example.org:8786", "CERTS=/srv/certs")
    assert '--cluster "tls://grader1.example.org:8786" --certs "/srv/certs"' in grade
    assert "--cluster" not in dry("grade")
    worker = " ".join(dry("grade-worker", "CLUSTER=tls://grader1.example.org:8786", "WORKERS=8", "GPU=1").split())
    for part in ("DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION=True", "CNNGRADER_WORKER_PROCESSES=8",
                 'dask worker "tls://grader1.example.org:8786"',
                 "--preload cnngrader.pipeline.cluster_worker", "--nthreads 1", "--nworkers 8",
                 '--tls-ca-file "certs/ca.pem"', '--tls-cert "certs/worker.pem"', '--tls-key "certs/worker-key.pem"',
                 "--resources GPU=1"):
        assert part in worker, (part, worker)
    refused = subprocess.run(["make", "-s", "grade-worker"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "set CLUSTER=tls://" in refused.stdout


def test_the_certificate_helper_writes_the_course_certificates(tmp_path):
    from cryptography import x509
    proc = subprocess.run([sys.executable, "-m", "cnngrader.pipeline.certs", "certs", "--host",
                           "grader1.example.org", "--host", "10.0.0.7"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    folder = tmp_path / "certs"
    ca = x509.load_pem_x509_certificate((folder / "ca.pem").read_bytes())
    for role in ("scheduler", "worker", "client"):
        cert = x509.load_pem_x509_certificate((folder / f"{role}.pem").read_bytes())
        cert.verify_directly_issued_by(ca)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "grader1.example.org" in names.get_values_for_type(x509.DNSName)
        assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} == {"10.0.0.7", "127.0.0.1"}
    for role in ("ca", "scheduler", "worker", "client"):
        assert (folder / f"{role}-key.pem").stat().st_mode & 0o077 == 0, f"{role}-key.pem is readable by others"


def test_missing_certificates_and_unsandboxed_runs_are_refused(tmp_path):
    cfg = course_config(tmp_path)
    cfg.Cluster.certificates = str(tmp_path / "none")
    with pytest.raises(ClusterRefused, match="missing certificate file.*cnngrader.pipeline.certs"):
        cluster.check_cluster("tls://127.0.0.1:8786", cfg)
    cfg.GradingExecute.sandbox = False
    with pytest.raises(ClusterRefused, match="unsandboxed"):
        cluster.check_cluster("tls://127.0.0.1:8786", cfg)


def test_a_client_without_the_course_certificate_cannot_connect(tmp_path, certs):
    from distributed import Client
    other = make_certificates(tmp_path / "other")  # a certificate of another CA
    with running_cluster(certs, tmp_path / "cluster", workers=()) as c:
        with pytest.raises((OSError, TimeoutError)):
            Client(c.address, security=cluster.security(other), timeout=5, set_as_default=False)
        with pytest.raises((OSError, TimeoutError)):
            Client(f"tcp://127.0.0.1:{c.port}", timeout=5, set_as_default=False)


def test_results_are_checked_json():
    sa = ("good", "01_fc_to_conv")
    nb = nbformat.writes(nbformat.v4.new_notebook())
    ok = json.dumps({"student": "good", "assignment": "01_fc_to_conv", "seconds": 1.5, "error": None,
                     "notebooks": {"01_fc_to_conv": nb}})
    assert read_result(ok, sa, 1 << 20)[:2] == (1.5, None)
    with pytest.raises(ValueError, match="at most"):
        read_result(ok, sa, 10)
    with pytest.raises(ValueError, match="another submission"):
        read_result(ok, ("bad", "01_fc_to_conv"), 1 << 20)
    with pytest.raises(ValueError, match="bad notebook name"):
        read_result(ok.replace('"01_fc_to_conv": ', '"../x": '), sa, 1 << 20)
    with pytest.raises(ValueError, match="not JSON text"):
        read_result(b"\x80\x04", sa, 1 << 20)  # a pickle is never accepted


class FakeFuture:
    """A finished Dask future: its result is the worker's JSON, computed here by the real task."""

    def __init__(self, result):
        self._result = result

    def add_done_callback(self, fn):
        fn(self)

    def result(self):
        if isinstance(self._result, BaseException):
            raise self._result
        return self._result

    def release(self):
        pass


def test_jobs_are_data_and_gpu_assignments_ask_for_the_gpu(tmp_path, monkeypatch):
    write_submissions(tmp_path, {"good": submissions()["good"]})
    (tmp_path / "submitted" / "good" / AIDS[0] / "timestamp.txt").write_text("2026-12-01 10:00:00 UTC")
    cfg = course_config(tmp_path)
    cfg.merge(config())
    cfg.Cluster.gpu_assignments = [AIDS[0]]
    sent = []
    notebook = nbformat.writes(submissions()["good"][AIDS[0]])

    def submit(fn, job, **kw):
        sent.append((fn, job, kw))
        return FakeFuture(json.dumps({"student": job["student"], "assignment": job["assignment"], "seconds": 2.0,
                                      "error": None, "notebooks": {AIDS[0]: notebook}}))
    pool = cluster.ClusterWorkers("tcp://127.0.0.1:1", cfg, {("good", AIDS[0]): ("a" * 64, "b" * 64)})
    pool.client = SimpleNamespace(submit=submit, status="running")
    outcomes = list(pool.execute(cfg, tmp_path / "work", [("good", AIDS[0])], "unused"))
    assert outcomes == [("good", AIDS[0], 2.0, None)]
    fn, job, kw = sent[0]
    assert fn is cluster.grade_job and kw["resources"] == {"GPU": 1} and kw["retries"] == 2
    assert kw["key"] == f"cnngrade-good-{AIDS[0]}-{'a' * 16}-{'b' * 16}"
    assert set(job["files"]) == {f"{AIDS[0]}.ipynb", "timestamp.txt"}
    assert all(isinstance(v, bytes) for v in job["files"].values())
    assert job["secret"] == SECRET and job["digests"] == ["a" * 64, "b" * 64]
    assert "CourseDirectory" not in job["settings"] and job["settings"]["Execute"]["timeout"] == 30
    json.dumps(job["settings"])  # plain data
    assert (tmp_path / "work" / "executed" / "good" / AIDS[0] / f"{AIDS[0]}.ipynb").is_file()
    # a lost scheduler (the client's futures cancelled) stops the run instead of failing each job
    from concurrent.futures import CancelledError
    pool.client = SimpleNamespace(submit=lambda fn, job, **kw: FakeFuture(CancelledError("lost")), status="running")
    with pytest.raises(ClusterLost, match="run `make grade` again"):
        list(pool.execute(cfg, tmp_path / "work", [("good", AIDS[0])], "unused"))
    # a job killed with too many workers is reported, not recorded, and the batch goes on
    pool.client = SimpleNamespace(submit=lambda fn, job, **kw: FakeFuture(RuntimeError("KilledWorker")),
                                  status="running")
    (outcome,) = pool.execute(cfg, tmp_path / "work", [("good", AIDS[0])], "unused")
    assert outcome[3].startswith("on the cluster: RuntimeError")


def test_a_workers_preload_starts_its_zygote_with_its_share_of_the_cores(monkeypatch):
    from cnngrader.pipeline import cluster_worker, execute
    from cnngrader.pipeline.forked_kernel import ForkedKernelManager

    started = []
    monkeypatch.setattr(execute, "check_available", lambda: None)  # the preload has checked the sandbox already
    monkeypatch.setattr(ForkedKernelManager, "unavailable", lambda self, wait=True: started.append(self.threads))
    monkeypatch.setattr(cluster_worker.os, "cpu_count", lambda: 8)
    for processes, threads in (("4", 2), ("8", 1), ("16", 1), ("x", 8)):  # "x": one process, as by default
        monkeypatch.setenv(cluster_worker.PROCESSES_VAR, processes)
        cluster_worker._start_zygote()
        assert started[-1] == threads
    monkeypatch.setenv("CNNGRADER_FORK_KERNELS", "0")
    cluster_worker._start_zygote()
    assert len(started) == 4


@pytest.mark.parametrize("name", ["../x.ipynb", "/etc/passwd", "a/../../b", "a\\b", "", "./a", "a//b"])
def test_a_worker_refuses_file_names_outside_the_submission(name):
    from cnngrader.pipeline.cluster_worker import JobError, _safe_name
    with pytest.raises(JobError, match="bad file name"):
        _safe_name(name)


@pytest.mark.parametrize("change", [{"version": 0}, {"student": "../x"}, {"assignment": ".hidden"},
                                    {"files": {"a.ipynb": "text, not bytes"}}, {"secret": "1"}, {"digests": []}])
def test_a_worker_refuses_a_job_that_is_not_one(change):
    from cnngrader.pipeline.cluster_worker import JOB_VERSION, JobError, grade_job
    job = {"version": JOB_VERSION, "student": "s", "assignment": "a", "files": {}, "secret": 1, "settings": {},
           "digests": ["a", "b"], **change}
    with pytest.raises(JobError):
        grade_job(job)


def test_jobs_in_flight_are_bounded_and_an_oversized_submission_is_reported(tmp_path):
    write_submissions(tmp_path, submissions())
    cfg = course_config(tmp_path)
    cfg.merge(config())
    cfg.Cluster.max_in_flight = 1
    sent = []

    def submit(fn, job, **kw):
        sent.append(job["student"])
        return FakeFuture(json.dumps({"student": job["student"], "assignment": job["assignment"], "seconds": 1.0,
                                      "error": None, "notebooks": {AIDS[0]: nbformat.writes(submissions()["good"][
                                          AIDS[0]])}}))
    subs = [("bad", AIDS[0]), ("good", AIDS[0])]
    pool = cluster.ClusterWorkers("tcp://127.0.0.1:1", cfg, {sa: ("a" * 64, "b" * 64) for sa in subs})
    pool.client = SimpleNamespace(submit=submit, status="running")
    outcomes = pool.execute(cfg, tmp_path / "work", subs, "unused")
    assert next(outcomes)[:2] == ("bad", AIDS[0]) and sent == ["bad"]  # the second waits for the first
    assert next(outcomes)[:2] == ("good", AIDS[0]) and sent == ["bad", "good"]
    cfg.Cluster.max_submission_bytes = 100
    pool = cluster.ClusterWorkers("tcp://127.0.0.1:1", cfg, {sa: ("a" * 64, "b" * 64) for sa in subs})
    pool.client = SimpleNamespace(submit=submit, status="running")
    results = list(pool.execute(cfg, tmp_path / "work", subs, "unused"))
    assert [r[3] for r in results] == [f"bad/{AIDS[0]}: the submission is over 100 bytes",
                                       f"good/{AIDS[0]}: the submission is over 100 bytes"]
