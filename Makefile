# healer: `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: help install lint unit integration test demo bench chaos kafka-up kafka-down prometheus clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	# the tritonserver binary ships in this wheel; --no-deps keeps numpy/grpc pins of the venv
	$(BIN)/python -m pip install -q --no-deps 'nvidia-pytriton==0.7.0'
	@rm -f $(VENV)/.installed-*; touch $@

install: $(STAMP) ## create .venv and install healer with dev tools

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

bench: install ## benchmarks; tables on stdout, JSON in bench/results/
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

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
