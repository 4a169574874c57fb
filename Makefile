# healer: `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# The locks (`make lock`; docs/production.md, "Dependencies"): dev.txt is what `make install`
# and CI install (runtime + dev tools + the Triton test server), runtime.txt is resolved inside
# dev.txt and is what the image installs, so it ships the versions the tests ran.
LOCK_DEV := requirements/dev.txt
LOCK_RUNTIME := requirements/runtime.txt
# named after its inputs: a change to pyproject.toml or to the lock reinstalls
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK_DEV) 2>/dev/null | sha1sum | cut -c1-12)
PYTEST_ARGS ?=
# `make lock UPGRADE=1` moves every pin to the newest version pyproject.toml allows;
# `make lock UPGRADE=faust-streaming,aiokafka` only those; plain `make lock` keeps every pin
# that still satisfies pyproject.toml and resolves only what changed.
UPGRADE ?=
comma := ,
ifeq ($(UPGRADE),1)
LOCK_UPGRADE := --upgrade
else
LOCK_UPGRADE := $(foreach p,$(subst $(comma), ,$(UPGRADE)),--upgrade-package $(p))
endif
# one lock for every platform (markers), hashes for every file, Python 3.11 (the image's)
LOCK_FLAGS := --universal --python-version 3.11 --generate-hashes --quiet \
	--custom-compile-command 'make lock'

.PHONY: help install lock lint unit integration test demo bench chaos kafka-up kafka-down prometheus clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml $(LOCK_DEV)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes -r $(LOCK_DEV)
	# healer itself, editable; with a current lock its dependencies are all there already
	# (tests/unit/test_lock.py fails when the venv or pyproject.toml has left the lock)
	$(BIN)/python -m pip install -q -e .
	@rm -f $(VENV)/.installed-*; touch $@

install: $(STAMP) ## create .venv: the locked versions (requirements/dev.txt) + healer, editable

# uv resolves the locks; its version is the one dev.txt pins (any when dev.txt is unreadable)
$(BIN)/uv:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	v=$$(sed -n 's/^uv==\([^ ;]*\).*/==\1/p' $(LOCK_DEV) 2>/dev/null | head -n1); \
	$(BIN)/python -m pip install -q --force-reinstall --no-deps "uv$${v:->=0.5}"

lock: $(BIN)/uv ## re-resolve requirements/*.txt from pyproject.toml (UPGRADE=1 or UPGRADE=pkg,...)
	@mkdir -p requirements
	@# a lock is only a preference for the resolver: one with merge conflicts is dropped, not read
	@for f in $(LOCK_DEV) $(LOCK_RUNTIME); do \
	  if grep -qE '^(<<<<<<<|=======|>>>>>>>)' $$f 2>/dev/null; then \
	    echo "$$f has merge conflict markers: resolving it afresh"; rm -f $$f; fi; done
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra triton $(LOCK_FLAGS) $(LOCK_UPGRADE) \
	  -o $(LOCK_DEV)
	$(BIN)/uv pip compile pyproject.toml $(LOCK_FLAGS) -c $(LOCK_DEV) -o $(LOCK_RUNTIME)
	@echo "locked: $(LOCK_DEV), $(LOCK_RUNTIME); the next make target reinstalls .venv"

lint: install ## ruff, mypy (strict on the core), import rules
	$(BIN)/ruff check healer actions streams tests bench deploy
	$(BIN)/mypy healer
	$(BIN)/lint-imports

unit: install ## unit tests only (no network, seconds)
	$(BIN)/python -m pytest tests/unit -q $(PYTEST_ARGS)

# pytest exit 5 means "no tests collected": a failure for CI.
test: lint ## lint + every test (real Kafka, Triton, kube-apiserver)
	@set -o pipefail; CI=$${CI:-1} $(BIN)/python -m pytest tests -q -rs --durations=15 $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

demo: install ## embedded Kafka + worker + sample incident + audit trail, then clean up
	$(BIN)/python deploy/demo/demo.py

# every bench runs even when one fails; QUICK=1 passes --quick (small sizes, a few minutes in all)
bench: install ## benchmarks (~30 min; QUICK=1: small sizes); tables on stdout, JSON in bench/results/
	@start=$$(date +%s); failed=""; \
	for b in bench/bench_*.py; do echo "== $$b"; t0=$$(date +%s); \
	  $(BIN)/python $$b $(if $(QUICK),--quick) || failed="$$failed $$b"; \
	  echo "== $$b: $$(( $$(date +%s) - t0 ))s"; done; \
	$(BIN)/python -m bench.summary --since $$start; \
	echo "make bench: $$(( $$(date +%s) - start ))s"; \
	if [ -n "$$failed" ]; then echo "failed:$$failed"; exit 1; fi

chaos: install ## fault-injection scenarios (full); CI runs the short mode as a test
	$(BIN)/python -m bench.chaos.run

kafka-up: install ## start the embedded broker (prints bootstrap)
	$(BIN)/healer kafka up

kafka-down: install ## stop the embedded broker
	$(BIN)/healer kafka down

prometheus: install ## fetch Debian's prometheus + alertmanager for the tests (~/.cache/healer/debian; the tests do it too)
	$(BIN)/python -m tests.harness.prometheus

clean: ## remove the venv and caches in the tree (not ~/.cache/healer)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
