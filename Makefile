# The two commands: `make run` serves the API on SQLite, `make test` runs lint, mypy and every test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app wsgi

.PHONY: run test lint format migrate bench resilience clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

run: $(VENV)/.runtime
	$(FLASK) db upgrade
	exec $(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

# mypy reads its settings (strict, on mita_app/) from pyproject.toml.
test: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(VENV)/.dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Autogenerate a migration from the models: make migrate m="what changed"
migrate: $(VENV)/.dev
	$(FLASK) db migrate -m "$(m)"

# All five benchmarks; one of them: make bench BENCH=audit (auth, audit, better_auth, slow_clients,
# framework).
# See bench/README.md.
bench: $(VENV)/.dev
	bash bench/run.sh $(BENCH)

# Faults (PostgreSQL down, frozen, locked; the auth server failing) under load, on a PostgreSQL
# cluster of its own: a table per fault, PNGs in bench/results/resilience/. Options, e.g.
# make resilience RESILIENCE_ARGS="--phase pg-stop --out /tmp/r". See bench/README.md.
resilience: $(VENV)/.dev
	$(BIN)/python -m bench.resilience $(RESILIENCE_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis
