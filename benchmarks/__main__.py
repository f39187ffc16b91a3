"""python -m benchmarks: run the benchmarks, print a table, write benchmarks/results.json.

    python -m benchmarks                      # everything (15 minutes or more on 2 cores)
    python -m benchmarks --only ops,train     # the torch comparisons only (a few minutes)
    python -m benchmarks --skip grade,book
    python -m benchmarks --quick --only ops   # tiny sizes: checks that the harness runs
    python -m benchmarks --only similarity    # the similarity report on a generated class of 1,000
    python -m benchmarks --only loop,listing  # a notebook whose corr2d never returns; listing 1,000 vs 4,000 files
    python -m benchmarks --only cluster       # Dask's overhead per grading job against the local pool
    python -m benchmarks --only zygote        # forked sandboxed kernels against fresh ones (a few minutes)
    python -m benchmarks --only jobs          # JOBS=2 against JOBS=1 on the same batch, identical grades
    python -m benchmarks --only scaling       # the same, then 10,000 students on 1, 10 and 50 workers (a model)
"""
from __future__ import annotations

import argparse
import functools
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from . import book, cluster, fair_share, grading, jobs, listing, ops, scaling, similarity, training, zygote
from .machine import machine_info, versions
from .report import Skipped, table, write_json

SECTIONS = ("ops", "train", "grade", "loop", "jobs", "scaling", "listing", "share", "book", "similarity", "cluster",
            "zygote")
DEFAULT_OUT = Path(__file__).resolve().parent / "results.json"


def _sections(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in names if s not in SECTIONS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown section(s) {', '.join(bad)}; choose from {', '.join(SECTIONS)}")
    return names


def _devices(choice: str) -> list[torch.device]:
    cuda = [torch.device(f"cuda:{i}") for i in range(torch.cuda.device_count())][:1]
    if choice == "cpu":
        return [torch.device("cpu")]
    if choice == "cuda":
        return cuda
    return [torch.device("cpu")] + cuda


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    p.add_argument("--only", type=_sections, default=list(SECTIONS), metavar="SECTIONS",
                   help=f"comma-separated sections to run, from {','.join(SECTIONS)} (default: all)")
    p.add_argument("--skip", type=_sections, default=[], metavar="SECTIONS", help="sections not to run")
    p.add_argument("--device", choices=("all", "cpu", "cuda"), default="all",
                   help="devices for ops and train: the CPU and the first GPU if present (default), or one of them")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads for ops and train (default: torch's own choice, one per core); "
                        "on a machine shared with other jobs, 1 avoids threads waiting on each other")
    p.add_argument("--repeats", type=int, default=7,
                   help="timed repeats per contender (default 7); a ratio is the median of the repeats' ratios")
    p.add_argument("--quick", action="store_true", help="tiny sizes, for checking the harness itself")
    p.add_argument("--students", type=int, default=8, help="generated students to grade (default 8)")
    p.add_argument("--class-size", type=int, default=1000,
                   help="generated students for the similarity report (default 1000)")
    p.add_argument("--jobs", type=int, default=2, help="workers for the parallel grading run (default 2)")
    p.add_argument("--batch-students", type=int, default=2,
                   help="students (six solution notebooks each) of the jobs and scaling sections (default 2)")
    p.add_argument("--job-overhead", type=float, default=None, metavar="SECONDS",
                   help="scaling: per-job overhead on a worker, e.g. Dask's measured one "
                        "(default: the local pool's, measured)")
    p.add_argument("--scheduler-overhead", type=float, default=None, metavar="SECONDS",
                   help=f"scaling: the scheduler's serial time per task (default {scaling.DASK_SCHEDULER_S_PER_TASK}, "
                        "Dask's documented figure)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON results file (default {DEFAULT_OUT})")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be at least 1")
    if args.students < 1 or args.jobs < 2 or args.batch_students < 1:
        p.error("--students and --batch-students must be at least 1 and --jobs at least 2")
    if any(v is not None and v < 0 for v in (args.job_overhead, args.scheduler_overhead)):
        p.error("--job-overhead and --scheduler-overhead are seconds, at least 0")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    sections = [s for s in args.only if s not in args.skip]
    devices = _devices(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    machine = machine_info()
    log = functools.partial(print, flush=True)
    gpu = ", ".join(g["name"] for g in machine["gpus"]) or "no GPU"
    log(f"benchmarks: {', '.join(sections)} on {machine['cpu']} ({machine['cores']} cores, "
        f"{machine['ram_gib']} GiB), {gpu}; load average {machine['load_average']}")
    if args.device == "cuda" and not devices:
        log("no CUDA device: the ops and train parts have nothing to run on")

    results, skipped = [], []
    if {"ops", "train"} & set(sections) and not any(d.type == "cuda" for d in devices) and args.device != "cpu":
        skipped.append(Skipped("ops/train", "cuda: no CUDA device on this machine (torch.cuda.device_count() == 0)"))
    if "ops" in sections:
        results += ops.run(devices, args.quick, args.repeats, log=log)
    if "train" in sections:
        results += training.run(devices, args.quick, args.repeats, log=log)
    if "grade" in sections:
        r, s = grading.run(args.students, args.jobs, log=log)
        results, skipped = results + r, skipped + s
    if "loop" in sections and "grade" not in sections:  # the grade section measures it too
        why = grading.missing()
        if why:
            skipped.append(Skipped("loop", why))
        else:
            results.append(grading.looping(log))
    if {"jobs", "scaling"} & set(sections):  # the scaling model is computed from the jobs run's costs
        r, s, costs = jobs.run(args.batch_students, args.jobs, log=log)
        results, skipped = results + (r if "jobs" in sections else []), skipped + s
        if "scaling" in sections and costs is not None:
            results += scaling.run(costs, args.job_overhead, args.scheduler_overhead, log=log)
    if "listing" in sections:
        r, s = listing.run(log=log)
        results, skipped = results + r, skipped + s
    if "share" in sections:
        r, s = fair_share.run(log=log)
        results, skipped = results + r, skipped + s
    if "book" in sections:
        r, s = book.run(log=log)
        results, skipped = results + r, skipped + s
    if "similarity" in sections:
        r, s = similarity.run(args.class_size, log=log)
        results, skipped = results + r, skipped + s
    if "cluster" in sections:
        r, s = cluster.run(log=log)
        results, skipped = results + r, skipped + s

    if "zygote" in sections:
        r, s = zygote.run(log=log)
        results, skipped = results + r, skipped + s

    seconds = time.perf_counter() - t0
    machine["load_average_end"] = machine_info()["load_average"]
    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    write_json(args.out, machine, versions(), options, results, skipped, started, seconds)
    print()
    print(table(results, skipped))
    print(f"\n{len(results)} results in {seconds:.0f} s; written to {args.out}")
    return 1 if any(s.failed for s in skipped) else 0


if __name__ == "__main__":
    sys.exit(main())
