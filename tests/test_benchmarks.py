"""The benchmark harness (benchmarks/, `make bench`) on tiny sizes: it runs, its timers rank
things correctly, its table and JSON say what they should, and missing parts skip cleanly."""
from __future__ import annotations

import importlib
import json
import math
import sys
import time
import types
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ is a top-level package, not installed
from benchmarks import __main__ as bench_main
from benchmarks import cluster, grading, grading_profile, listing, training, zygote
from benchmarks.report import Result, Skipped, table
from benchmarks.timing import Timing, calls_per_sample, compare, paired_ratio


def test_compare_ranks_a_slow_and_a_fast_function():
    cpu = torch.device("cpu")
    t = compare({"slow": lambda: time.sleep(0.006), "fast": lambda: time.sleep(0.002)}, cpu, repeats=3,
                min_seconds=0.005)
    assert set(t) == {"slow", "fast"} and all(len(v.samples) == 3 for v in t.values())
    assert t["fast"].median >= 0.002 and t["slow"].median >= 0.006  # seconds per call, not per sample
    assert t["slow"].median / t["fast"].median > 1.5


def test_calls_per_sample_batches_short_calls():
    assert calls_per_sample(lambda: None, torch.device("cpu"), 0.001) > 1
    assert calls_per_sample(lambda: time.sleep(0.003), torch.device("cpu"), 0.001) == 1


def test_paired_ratio_cancels_load_that_hits_both_sides_of_a_repeat():
    # Repeats 2 and 3 ran under load: both contenders slowed tenfold in repeat 2, only one in 3.
    a, b = Timing([1.0, 10.0, 10.0]), Timing([2.0, 20.0, 2.0])
    assert paired_ratio(a, b) == pytest.approx(0.5)
    assert a.median / b.median == pytest.approx(5.0)  # what a ratio of medians would have said


def test_timing_median_and_spread():
    t = Timing([1.0, 2.0, 3.0, 4.0, 100.0])
    assert t.median == 3.0
    assert t.spread > 0


@pytest.mark.parametrize(
    "value, target, met",
    [(1.5, "<= 2", True), (2.5, "<= 2", False), (0.96, ">= 0.95", True), (0.9, ">= 0.95", False),
     (1.0, None, None), (math.nan, "<= 2", None)],
)
def test_result_target(value, target, met):
    assert Result("ops", "x", "cpu", value, "x", target).met is met


def test_table_shows_values_targets_and_skips():
    text = table(
        [Result("ops", "conv2d forward", "cpu", 1.234, "x", "<= 2"),
         Result("train", "bare loop", "cpu", 12345.0, "ex/s"),
         Result("book", "clean build", "-", 400.0, "s", "<= 300")],
        [Skipped("grade", "no pipeline")],
    )
    lines = text.splitlines()
    assert lines[0].split() == ["section", "benchmark", "device", "value", "target", "met"]
    assert "1.23x" in lines[2] and lines[2].rstrip().endswith("yes")
    assert "12,345 ex/s" in lines[3]
    assert "400 s" in lines[4] and lines[4].rstrip().endswith("NO")
    assert lines[-1] == "skipped grade: no pipeline"


def test_quick_ops_run_writes_results_json(tmp_path, capsys):
    out = tmp_path / "results.json"
    rc = bench_main.main(["--quick", "--only", "ops", "--device", "cpu", "--repeats", "1", "--out", str(out)])
    assert rc == 0
    doc = json.loads(out.read_text())
    for key in ("cpu", "cores", "ram_gib", "gpus", "torch_threads"):
        assert key in doc["machine"]
    for key in ("python", "torch", "cnnlib", "nbgrader", "git_commit"):
        assert key in doc["versions"]
    assert doc["versions"]["torch"] == torch.__version__
    names = [r["name"] for r in doc["results"]]
    assert any(n.startswith("conv2d forward /") for n in names)
    assert any(n.startswith("pool2d max /") for n in names) and any(n.startswith("pool2d avg /") for n in names)
    assert any("corr2d_multi_in_out loop" in n for n in names)
    for r in doc["results"]:
        assert r["value"] > 0 and math.isfinite(r["value"])
        if "max_abs_diff" in r["detail"]:  # a benchmark of a wrong answer would be meaningless
            assert r["detail"]["max_abs_diff"] < 1e-4, r["name"]
    conv = next(r for r in doc["results"] if r["name"].startswith("conv2d forward /"))
    assert conv["target"] == "<= 2" and conv["met"] in (True, False)
    d = conv["detail"]
    assert conv["value"] == pytest.approx(d["cnnlib_samples"][0] / d["torch_samples"][0])  # one repeat
    assert "section" in capsys.readouterr().out  # the table was printed


def test_quick_training_run_reports_ratios_and_throughputs():
    rows = training.run_variant(torch.device("cpu"), "classic", n=48, batch_size=16, repeats=1)
    by = {r.name.split(",")[0]: r for r in rows}
    ratio, layers = by["cnnlib.train / bare loop throughput"], by["cnnlib layers / torch layers time"]
    assert ratio.target == ">= 0.95" and layers.target == "<= 3"
    eps = ratio.detail["examples_per_sec"]
    assert set(eps) == {"train", "bare", "bare_cnnlib_layers"} and all(v > 0 for v in eps.values())
    s = ratio.detail["samples"]
    assert ratio.value == pytest.approx(s["bare"][0] / s["train"][0])  # one repeat: its own ratio


def test_grading_part_skips_cleanly_without_assignments(tmp_path, monkeypatch):
    monkeypatch.setattr(grading, "REPO", tmp_path)  # a course with no solutions/ or exercises/
    results, skipped = grading.run(students=8, jobs=2, log=lambda m: None)
    assert results == []
    assert len(skipped) == 1 and not skipped[0].failed and "missing" in skipped[0].reason


def test_zygote_part_skips_cleanly_without_assignments(tmp_path, monkeypatch):
    monkeypatch.setattr(grading, "REPO", tmp_path)  # zygote.run asks grading.missing() first
    results, skipped = zygote.run(log=lambda m: None)
    assert results == [] and len(skipped) == 1 and not skipped[0].failed


def test_zygote_part_ratios_come_from_the_measured_runs():
    def runs(per_notebook: float, notebooks: int) -> dict:
        per = {f"s/{'06_lenet' if k == 5 else f'0{k + 1}_x'}": per_notebook for k in range(notebooks)}
        return {"wall_s": per_notebook * notebooks + 1, "notebooks": notebooks, "execute_s": per_notebook * notebooks,
                "per_notebook_s": per}

    figures = {mode: {"warm-up": runs(s * 2, 1), "solutions": runs(s, 6), "a2": runs(s, 1), "student": runs(s, 6)}
               for mode, s in (("fresh", 3.0), ("warm spare", 2.0), ("forked", 0.75))}
    got = {r.name: r for r in zygote._results(figures, load=0.5)}
    ratio = got["fresh sandboxed kernel / forked kernel, seconds per notebook (six solutions)"]
    assert ratio.value == pytest.approx(4.0) and ratio.met
    assert got["seconds, solution of 02_cross_correlation alone, forked kernel"].met
    assert got["seconds, one student's six notebooks executed, forked kernels"].value == pytest.approx(4.5)
    assert got["of which the five notebooks without 06_lenet's training experiment, forked kernels"].value == \
        pytest.approx(3.75)
    assert got["seconds, the first notebook (03_padding_stride) with the mode's start-up, forked"].value == 1.5


def test_listing_part_on_small_folders(monkeypatch):
    monkeypatch.setattr(listing, "SIZES", (30, 120))  # 120 files: over the course's cap, so the scan refuses it
    results, skipped = listing.run(log=lambda m: None)
    assert skipped == []
    names = [r.name for r in results]
    assert len(results) == 9 and any("nbgrader 0.9's find_all_files" in n for n in names)
    assert all(math.isfinite(r.value) and r.value >= 0 for r in results)
    assert [r.target for r in results if r.unit == "x"] == [None, listing.LINEAR_TARGET, None]


def test_cluster_part_measures_both_contenders(monkeypatch):
    # a real TLS scheduler and worker on loopback, and the local pool, with a few jobs each
    monkeypatch.setattr(cluster, "JOBS_PER_REPEAT", 3)
    monkeypatch.setattr(cluster, "REPEATS", 2)
    results, skipped = cluster.run(log=lambda m: None)
    assert not skipped
    local, dask, overhead = results
    assert overhead.target == cluster.TARGET and overhead.unit == "ms"
    assert 0 < local.value and 0 < dask.value and len(overhead.detail["repeats"]) == 2
    gaps = [p["dask"] - p["local"] for p in overhead.detail["repeats"]]
    assert overhead.value == pytest.approx(sum(gaps) / 2 * 1000)  # the median of two, in ms
    result = json.loads(cluster.echo(cluster._job()))
    assert result["notebooks"][cluster.AID].startswith("{")


def test_bad_section_names_are_rejected(capsys):
    with pytest.raises(SystemExit):
        bench_main.parse_args(["--only", "ops,nonsense"])
    assert "nonsense" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() == 0, reason="needs a CUDA device; none present")
def test_quick_run_on_cuda(tmp_path):
    out = tmp_path / "results.json"
    rc = bench_main.main(["--quick", "--only", "ops,train", "--device", "cuda", "--repeats", "1", "--out", str(out)])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert doc["machine"]["gpus"] and doc["results"]
    assert all(r["device"].startswith("cuda") for r in doc["results"])
    assert all(r["value"] > 0 for r in doc["results"])


def test_scaling_model_bounds_and_shares():
    from benchmarks.scaling import Model

    m = Model(core_s_per_notebook=3.0, record_s_per_notebook=0.1, job_overhead_s=0.01, scheduler_s_per_task=0.001)
    one = m.wall(1, cores=8, notebooks=60_000)
    assert one["compute"] == pytest.approx(7500 * 3.01) and one["bound"] == "compute"
    assert one["wall"] == pytest.approx(7500 * 3.01 + 0.1)
    assert one["scheduler"] == pytest.approx(60.0) and one["scheduler_share"] == pytest.approx(60.0 / one["wall"])
    fifty = m.wall(50, cores=8, notebooks=60_000)  # 400 cores: 150 notebooks each, 451.5 s; recording 6,000 s
    assert fifty["bound"] == "record" and fifty["wall"] == pytest.approx(6000 + 3.01)
    fast = Model(3.0, 0.0, 0.0, scheduler_s_per_task=0.5).wall(50, notebooks=60_000)
    assert fast["bound"] == "scheduler" and fast["scheduler_share"] == pytest.approx(30_000 / (30_000 + 3.0))
    assert m.wall(3, cores=2, notebooks=7)["compute"] == pytest.approx(2 * 3.01)  # ceil(7 / 6) notebooks a core
    with pytest.raises(ValueError, match="job_overhead_s must be a finite number"):
        Model(3.0, 0.1, float("nan"))
    with pytest.raises(ValueError, match="workers, cores and notebooks"):
        m.wall(0)


def test_scaling_table_and_rows(tmp_path):
    from benchmarks.jobs import Costs
    from benchmarks.scaling import run

    costs = Costs(notebooks=12, jobs=2, serial_s=40.0, parallel_s=22.0, execute_s_per_notebook=3.0,
                  core_s_per_notebook=3.5, record_s_per_notebook=0.2, dispatch_s=0.002, load_average=[1.0, 1.1, 1.2])
    out = tmp_path / "scaling.md"
    rows = run(costs, out=out, log=lambda *a: None)
    text = out.read_text()
    assert "10,000 students x 6 notebooks" in text and "| 50 |" in text and "speedup 1.82x" in text
    assert "Dask's documented ~1 ms per task, https://distributed.dask.org/en/latest/" in text
    walls = [r for r in rows if r.name.startswith("wall time")]
    assert [r.unit for r in walls] == ["s"] * 3 and walls[0].value > walls[1].value >= walls[2].value
    given = run(costs, job_overhead=0.05, scheduler_overhead=0.002, out=out, log=lambda *a: None)
    assert given[0].detail["model"]["job_overhead_s"] == 0.05 and "given with --job-overhead" in out.read_text()


def test_dispatch_overhead_of_the_local_pool():
    from benchmarks.scaling import dispatch_overhead

    seconds = dispatch_overhead(jobs=2, count=5, payload={"a": 1})
    assert 0 < seconds < 5


def test_grades_csv_compares_scores_not_dates(tmp_path):
    from benchmarks.jobs import grades_csv

    head = "assignment,duedate,timestamp,student_id,last_name,first_name,email,raw_score,late_submission_penalty," \
           "score,max_score,status\n"
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text(head + "01,,2026-01-01,ann,,,,3,0,3,4,graded\n")
    b.write_text(head + "01,,2026-01-02,ann,,,,3,0,3,4,graded\n")
    assert grades_csv(a) == grades_csv(b) == [("ann", "01", "3", "3", "4", "graded")]
    b.write_text(head + "01,,2026-01-02,ann,,,,2,0,2,4,graded\n")
    assert grades_csv(a) != grades_csv(b)


def test_scaling_model_records_at_the_cpu_time_where_measured(tmp_path):
    from dataclasses import replace

    from benchmarks.jobs import Costs
    from benchmarks.scaling import run

    costs = Costs(notebooks=12, jobs=2, serial_s=40.0, parallel_s=22.0, execute_s_per_notebook=3.0,
                  core_s_per_notebook=3.5, record_s_per_notebook=0.2, dispatch_s=0.002, load_average=[1.0, 1.1, 1.2])
    out = tmp_path / "scaling.md"
    run(costs, out=out, log=lambda *a: None)
    assert "0.20 s (the wall time measured here)" in out.read_text()
    rows = run(replace(costs, record_cpu_s_per_notebook=0.05), out=out, log=lambda *a: None)
    assert "0.05 s (the recording thread's CPU time" in out.read_text() and "was 0.20 s" in out.read_text()
    assert rows[0].detail["model"]["record_s_per_notebook"] == 0.05  # the head's own cost, not its waits



def test_grading_profile_times_patched_steps_and_restores_them(monkeypatch):
    class Base:
        def step(self):
            time.sleep(0.01)

    class Child(Base):
        def own(self):
            return self.step()

    monkeypatch.setitem(sys.modules, "fake_steps", types.SimpleNamespace(Child=Child))
    steps = [("fake_steps", "Child", "own", "outer"), ("fake_steps", "Child", "step", "inner")]
    own = Child.own
    with grading_profile.Timers().patch(steps) as timers:
        Child().own()
        Child().own()
    assert timers.calls == {"outer": 2, "inner": 2}
    assert timers.seconds["outer"] >= timers.seconds["inner"] >= 0.02
    assert Child.own is own and "step" not in vars(Child)  # as before: the inherited one is Base's again
    with pytest.raises(AttributeError, match="Child.missing is not there to time"):
        with grading_profile.Timers().patch([("fake_steps", "Child", "missing", "x")]):
            pass


def test_grading_profile_steps_exist():
    for module, cls, attr, _ in grading_profile.STEPS:
        owner = importlib.import_module(module)
        assert hasattr(getattr(owner, cls) if cls else owner, attr), (module, cls, attr)


@pytest.mark.parametrize("argv, said", [(["--runs", "0"], "--runs must be at least 1"),
                                        (["--assignment", "99_nothing"], "--assignment must be one of")])
def test_grading_profile_refuses_bad_arguments(argv, said, capsys):
    with pytest.raises(SystemExit):
        grading_profile.main(argv)
    assert said in capsys.readouterr().err
