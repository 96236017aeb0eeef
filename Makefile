# Fleetweb: `make run` starts everything, `make test` runs the whole suite. Both install first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
SIZE ?= quick

.PHONY: install run test test-unit check lint bench localfleet clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is required (Fleetweb runs on Python 3.11)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# make run                      -> local member clusters from localfleet/ (needs Go)
# make run KUBECONFIG=~/.kube/config  -> attach that kubeconfig's contexts instead
run: install
	$(BIN)/python manage.py run $(if $(filter command line,$(origin KUBECONFIG)),--kubeconfig "$(KUBECONFIG)")

# The whole suite: the unit tests run while the local member clusters' binaries build (or are found cached), then
# the end-to-end and browser tests (localfleet/suite.py). With PYTEST_ARGS: build, then pytest with exactly those.
test: install
	$(BIN)/python -m localfleet.suite $(PYTEST_ARGS)

# Unit tests only: no Go, no member clusters, no browser (real PostgreSQL and Redis, embedded).
test-unit: install
	$(BIN)/python -m pytest -m "not e2e and not browser" $(PYTEST_ARGS)

# The static checks CI runs before the tests (.ci/run), and pre-commit runs on every commit: lint, layers (import-
# linter), types (mypy with django-stubs and djangorestframework-stubs; not incremental, since its Django plugin
# misreads managers from a cache older than a model move), a return type on every public function, and no missing
# migration.
check: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy --no-incremental
	$(BIN)/python .ci/annotations.py
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/python manage.py agent_chart --check

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python -m benchmarks --size $(SIZE)

localfleet: install
	$(BIN)/python -m localfleet build

clean:
	rm -rf $(VENV) .fleetweb
