"""The instructor's command line (`make exercises` and `make grade` call it).

    python -m cnngrader.pipeline generate [ASSIGNMENT ...]        # assignments/ -> solutions/ -> exercises/
    python -m cnngrader.pipeline grade [--jobs N] [--student S] [--force] [--progress MODE] [--cluster tls://HOST:8786]
                                                                  [ASSIGNMENT ...]
                                                                  # submitted/ -> grades.csv, feedback/, reports/
    python -m cnngrader.pipeline report                           # reports/ from the gradebook
    python -m cnngrader.pipeline similarity [--earlier DIR] [ASSIGNMENT ...]
                                                                  # submitted/ -> reports/similarity/
    python -m cnngrader.pipeline submissions --count N            # N solution-copy students (benchmarks)

Run it from the course directory (the one holding course.toml), or set $CNNGRADER_COURSE.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from traitlets.config import Config

from cnngrader.course import Course, load_course
from cnngrader.pipeline.cluster import ClusterLost, ClusterRefused
from cnngrader.pipeline.config import CoursePaths, course_config
from cnngrader.pipeline.generate import generate
from cnngrader.pipeline.grade import grade_course, summary
from cnngrader.pipeline.progress import MODES
from cnngrader.pipeline.report import write_report
from cnngrader.pipeline.sandbox import SandboxUnavailable
from cnngrader.pipeline.similarity import write_similarity
from cnngrader.pipeline.submissions import make_submissions

log = logging.getLogger("cnngrader.pipeline")


def parser() -> argparse.ArgumentParser:
    """The command line's parser: one subcommand per step an instructor runs."""
    top = argparse.ArgumentParser(prog="python -m cnngrader.pipeline", description=__doc__.split("\n\n")[0])
    top.add_argument("-v", "--verbose", action="store_true", help="show nbgrader's own log")
    sub = top.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("generate", help="assignments/ -> solutions/ -> exercises/ (nbgrader generate_assignment)")
    p.add_argument("assignments", nargs="*", help="assignment ids (default: all of course.toml)")
    p.add_argument("--release-dir", help="write the student versions here instead of exercises/")
    p.add_argument("--db-url", help="gradebook to register the assignments in")
    p = sub.add_parser("grade", help="autograde new and changed submissions, write feedback/, grades.csv and reports/")
    p.add_argument("assignments", nargs="*", help="grade only these assignments (default: all)")
    p.add_argument("--force", action="store_true", help="regrade submissions that are up to date too")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (kernels at once)")
    p.add_argument("--root", help="grading directory holding submitted/ (default: the course directory)")
    p.add_argument("--student", action="append", help="grade only this student (repeatable; or comma-separated)")
    p.add_argument("--no-feedback", action="store_true")
    p.add_argument("--progress", choices=MODES, default="auto",
                   help="a progress bar on stderr (bar), a line a minute (log) or nothing (off); "
                        "default auto: the bar on a terminal, else the lines")
    p.add_argument("--unsandboxed", action="store_true",
                   help="UNSAFE: run kernels without a sandbox (where bubblewrap or user namespaces are missing)")
    p.add_argument("--cluster", help="execute on the Dask cluster of this scheduler, tls://HOST:8786 (docs/cluster.md)")
    p.add_argument("--certs", help="folder of the course's certificates for --cluster (default: <course>/certs)")
    p = sub.add_parser("report", help="write reports/ from the gradebook")
    p.add_argument("--root")
    p = sub.add_parser("similarity", help="which submissions share code: reports/similarity/ (instructor only)")
    p.add_argument("assignments", nargs="*", help="only these assignments (default: all)")
    p.add_argument("--root", help="grading directory holding submitted/ (default: the course directory)")
    p.add_argument("--earlier", help="a folder of earlier terms' submissions, <student>/<assignment>/*.ipynb")
    p.add_argument("--threshold", type=float, help="flag pairs from this score on (default: SimilarityCheck's)")
    p = sub.add_parser("submissions", help="write solution-copy submissions (for benchmarks)")
    p.add_argument("--count", type=int, default=8)
    p.add_argument("--prefix", default="student")
    p.add_argument("--root", required=True, help="where to write submitted/")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("traitlets").setLevel(logging.INFO if args.verbose else logging.ERROR)
    course = load_course()
    command = {"generate": _generate, "grade": _grade, "report": _report, "similarity": _similarity,
               "submissions": _submissions}[args.cmd]
    return command(args, course)


def _ids(values: Sequence[str] | None) -> list[str] | None:
    """Ids given as repeated arguments and/or comma-separated; None for none."""
    return [v for arg in values or [] for v in arg.replace(",", " ").split()] or None


def _generate(args: argparse.Namespace, course: Course) -> int:
    paths = {}
    if args.release_dir:
        paths["release_directory"] = Path(args.release_dir).resolve()
    if args.db_url:
        paths["db_url"] = args.db_url
    for aid in generate(args.assignments or None, course=course, **paths):
        log.info("generated %s", aid)
    return 0


def _grade(args: argparse.Namespace, course: Course) -> int:
    config = Config()
    if args.unsandboxed:
        config.GradingExecute.sandbox = False
    if args.certs:
        config.Cluster.certificates = str(Path(args.certs).resolve())
    try:
        result = grade_course(args.root, jobs=args.jobs, students=_ids(args.student), course=course, config=config,
                              assignments=_ids(args.assignments), feedback=not args.no_feedback, force=args.force,
                              progress=args.progress, cluster=args.cluster or None)
    except (SandboxUnavailable, ClusterRefused) as e:
        log.error("%s", e)
        return 2
    except ClusterLost as e:
        log.error("%s", e)
        return 3
    log.info(summary(result))
    return 1 if result.failures else 0


def _report(args: argparse.Namespace, course: Course) -> int:
    cfg = course_config(args.root, course)
    log.info("report: %s", write_report(cfg, CoursePaths.from_config(cfg).reports) / "report.md")
    return 0


def _similarity(args: argparse.Namespace, course: Course) -> int:
    config = Config()
    if args.threshold is not None:
        config.SimilarityCheck.threshold = args.threshold
    try:
        result = write_similarity(args.root, _ids(args.assignments), args.earlier, course=course, config=config)
    except (KeyError, FileNotFoundError) as e:
        log.error("similarity: %s", e.args[0] if e.args else e)
        return 2
    log.info("similarity: %d flagged pair(s) in %s", len(result.pairs), result.out / "index.html")
    return 0


def _submissions(args: argparse.Namespace, course: Course) -> int:
    students = make_submissions(args.root, args.count, prefix=args.prefix, course=course)
    log.info("wrote %d students: %s ... %s", len(students), students[0], students[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
