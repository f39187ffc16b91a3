"""The first process inside a grading sandbox (cnngrader/pipeline/sandbox.py binds this file
read-only at /run/cnngrader-init.py and runs it with `python -I -S`):

    python -I -S /run/cnngrader-init.py --inbox DIR --dest DIR [--as BYTES] [--cpu SECONDS] -- CMD...

It copies the submission from the read-only inbox into the writable /submission tmpfs, creates
HOME and MPLCONFIGDIR, sets per-process limits (the second line behind the sandbox's cgroup),
changes into /submission and replaces itself with CMD (os.execv), keeping its pid.

Standard library only: nothing of the course is importable before the exec.
"""
import os
import resource
import shutil
import sys


def copy_inbox(inbox: str, dest: str) -> None:
    """Copy the submission from the read-only inbox into /submission. Also run by the grader, in a
    warm spare kernel (started with an empty inbox) before its first cell:
    runpy.run_path("/run/cnngrader-init.py")["copy_inbox"](...)."""
    if os.path.isdir(inbox):
        shutil.copytree(inbox, dest, copy_function=shutil.copyfile, dirs_exist_ok=True)


def main(argv: list[str]) -> None:
    split = argv.index("--")
    opts = dict(opt.partition("=")[::2] for opt in argv[:split])
    cmd = argv[split + 1:]
    inbox, dest = opts["--inbox"], opts["--dest"]
    copy_inbox(inbox, dest)
    for var in ("HOME", "MPLCONFIGDIR", "IPYTHONDIR"):
        if os.environ.get(var):
            os.makedirs(os.environ[var], exist_ok=True)
    address_space = int(opts.get("--as") or 0)
    if address_space > 0:  # a single huge allocation becomes a MemoryError, not an OOM kill
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    cpu = int(opts.get("--cpu") or 0)
    if cpu > 0:  # per process; the tree-wide CPU budget is the sandbox's watchdog
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    os.chdir(dest)
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main(sys.argv[1:])
