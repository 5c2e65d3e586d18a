# Callcenter: `make run` starts the product on its embedded default, `make test` runs
# every test. Both create the virtualenv on first use and are safe to run again.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: run test lint format install messages bench clean

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

# Benchmarks report figures and ratios (see README); they are not tests.
bench: install
	$(BIN)/python -m bench.run

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Needs GNU gettext (apt-get install gettext): refresh the catalogues, then compile them.
messages: install
	$(BIN)/python manage.py makemessages --locale es --locale en --no-obsolete --add-location file --ignore '.venv/*' --ignore 'var/*' --ignore 'tests/*'
	$(BIN)/python manage.py compilemessages --ignore '.venv/*' --ignore 'var/*'

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
