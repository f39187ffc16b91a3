# The course's entry points. `make test` and `make book` are all a fresh machine needs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
JOBS   ?= 1
CERTS  ?= certs

export PIP_DISABLE_PIP_VERSION_CHECK := 1
# Every tool run from here sees the same, offline-friendly settings.
export MPLBACKEND := Agg
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: help system venv test book exercises grade bench publish clean

help:
	@echo "make test       install missing system packages, create/refresh .venv, then run every test (what CI runs)"
	@echo "make book       the same set-up, then build the HTML book into _build/html"
	@echo "make exercises  rebuild solutions/ from assignments/, then exercises/ (student versions) from them"
	@echo "make grade      autograde new or changed submissions in submitted/, write feedback/, grades.csv and reports/"
	@echo "                (JOBS=N: N workers; STUDENT=a,b / ASSIGNMENT=id,id: only those; FORCE=1: regrade all; UNSAFE=1: no sandbox)"
	@echo "                (CLUSTER=tls://host:8786: on the Dask workers of that scheduler, CERTS=dir: docs/cluster.md)"
	@echo "make grade-worker CLUSTER=tls://host:8786  a Dask grading worker (WORKERS=N processes, GPU=1 on a GPU machine)"
	@echo "                (PROGRESS=bar|log|off: a progress bar on stderr, a line a minute, or nothing; default: bar on a terminal)"
	@echo "make similarity which submissions share code, with each other and the course's sources: reports/similarity/"
	@echo "                (instructor only; ASSIGNMENT=id,id: only those; EARLIER=dir: earlier terms' submissions too)"
	@echo "make bench      run benchmarks/ and write benchmarks/results.json (BENCH=\"--only ops,train\" for part)"
	@echo "make publish DEST=dir  export the student-facing course (no solutions, answers or grading pipeline) into dir"

# The stamp is newer than both inputs once they are installed, so an unchanged
# environment costs one `make` timestamp check, not a reinstall.
$(STAMP): requirements.txt pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required, found " + sys.version.split()[0]'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	@# jsonschema (under nbformat) imports rfc3987-syntax, an optional IRI checker that jupyter-events' extra pulls
	@# in, and it compiles ~35 parsers at import: 1.1 s in every grader process (jsonschema #1428). No schema
	@# the course validates has an IRI format.
	$(PY) -m pip uninstall -q -y rfc3987-syntax
	$(PY) -m pip install -q --no-deps -e ".[grader]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

# bubblewrap, chromium, dataset-fashion-mnist: installed where missing, or one line that says how.
system:
	@bash tools/system_packages.sh

venv: $(STAMP)

test: system $(STAMP)
	$(PY) -m pytest

book: system $(STAMP)
	@# Chapters run at build time; jupyter-cache (_build/.jupyter_cache) keys their outputs on their code
	@# only, so when what they import (cnnlib, the course manifest) or the requirements change, the whole
	@# build is redone from scratch. The grader (cnngrader/) is not part of the key. The data a chapter
	@# loads is: cnnlib's loader prints a fingerprint of the files it read (paths and checksums), and
	@# book/_ext/book_data.py re-executes, at the start of the build, the chapters whose cached fingerprint
	@# differs from that of the data they would load now (cnnlib.data.data_source()); no other chapter.
	@deps=$$(export LC_ALL=C; cat cnnlib/*.py course.toml requirements.txt | sha256sum | cut -c1-16); \
	if [ "$$(cat _build/.book-deps 2>/dev/null)" != "$$deps" ]; then rm -rf _build; fi; \
	mkdir -p _build && echo "$$deps" > _build/.book-deps
	@# matplotlib builds its font cache on first use and says so on stderr: do it before any chapter runs.
	$(PY) -c "import matplotlib.font_manager"
	@# One thread per kernel: LeNet's small convolutions gain little from more, and lose a lot on a busy machine.
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(VENV)/bin/jupyter-book build . -W --keep-going
	@# Last: which dataset each chapter that loads data used, and a NOTICE if one fell back to the digits.
	@cat _build/datasets.txt

exercises: $(STAMP)
	$(PY) -m cnngrader.pipeline generate

grade: $(STAMP)
	$(PY) -m cnngrader.pipeline grade --jobs $(JOBS) $(if $(UNSAFE),--unsandboxed) $(if $(FORCE),--force) \
	  $(if $(STUDENT),--student "$(STUDENT)") $(if $(PROGRESS),--progress $(PROGRESS)) \
	  $(if $(CLUSTER),--cluster "$(CLUSTER)" --certs "$(CERTS)") $(ASSIGNMENT)

# One machine's Dask workers for `make grade CLUSTER=...`: one job per process (--nthreads 1), mutual TLS
# with the course's certificates, encryption required on every connection (docs/cluster.md).
.PHONY: grade-worker
grade-worker: $(STAMP)
	@test -n "$(CLUSTER)" || { echo "make grade-worker: set CLUSTER=tls://scheduler:8786"; exit 2; }
	DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION=True CNNGRADER_WORKER_PROCESSES=$(or $(WORKERS),1) \
	  $(VENV)/bin/dask worker "$(CLUSTER)" \
	  --preload cnngrader.pipeline.cluster_worker --nthreads 1 --nworkers $(or $(WORKERS),1) --no-dashboard \
	  --tls-ca-file "$(CERTS)/ca.pem" --tls-cert "$(CERTS)/worker.pem" --tls-key "$(CERTS)/worker-key.pem" \
	  $(if $(GPU),--resources GPU=1)

.PHONY: similarity
similarity: $(STAMP)
	$(PY) -m cnngrader.pipeline similarity $(if $(EARLIER),--earlier "$(EARLIER)") $(ASSIGNMENT)

bench: $(STAMP)
	$(PY) -m benchmarks $(BENCH)

publish:
	@test -n "$(DEST)" || { echo "make publish DEST=<folder>: say where to export the course"; exit 2; }
	$(PYTHON) tools/publish.py "$(DEST)"

clean:
	rm -rf _build .pytest_cache .hypothesis
