# Callcenter: `make run` starts the product on its embedded default, `make test` runs
# every test. Both create the virtualenv on first use and are safe to run again.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: run test lint format validate install messages bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

install: $(INSTALLED)

# Web (uvicorn), worker and beat together, with demo data. Variables from .env apply.
run: install
	@set -a; [ ! -f .env ] || . ./.env; set +a; \
	export PORT="$${PORT:-8000}"; export APP_URL="$${APP_URL:-http://localhost:$$PORT}"; \
	export PATH="$(CURDIR)/$(BIN):$$PATH"; \
	$(BIN)/python manage.py migrate --noinput && \
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0 && \
	$(BIN)/python manage.py seed_demo && \
	exec $(BIN)/honcho --no-colour start --procfile Procfile --port "$$PORT"

test: install
	$(BIN)/pytest

# Benchmarks report figures and ratios (see README); they are not tests. They start a
# throwaway PostgreSQL and Redis as CI does, unless DATABASE_URL is set.
# BENCH_ONLY=dispatch,api runs some of them.
bench: install
	bash bench/services.sh $(BIN)/python -m bench.run

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

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
	rm -rf $(VENV) var .pytest_cache .ruff_cache
