# PowerBank — `make run` and `make test` do all set-up on a machine with only Python.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
HOST ?= 127.0.0.1
STAMP := $(VENV)/.installed-stamp

.PHONY: run test test-pg lint install clean-db translations-extract translations-compile

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m powerbank.tools.translations compile
	touch $(STAMP)

install: $(STAMP)

## Serve the demo at http://$(HOST):$(PORT) with simulated chargers connected.
run: $(STAMP)
	POWERBANK_DEMO=1 $(BIN)/powerbank db upgrade
	POWERBANK_DEMO=1 $(BIN)/powerbank demo-data --if-empty
	POWERBANK_DEMO=1 $(BIN)/powerbank serve --host $(HOST) --port $(PORT) --simulate

## Run the whole test suite, after lint and type checks.
test: lint
	$(BIN)/python -m pytest

## The suite again on PostgreSQL: a throw-away cluster on loopback (Debian's `postgresql` package), removed
## afterwards. The browser tests drive `make run`'s demo, on SQLite, and run in `make test` only.
test-pg: $(STAMP)
	$(BIN)/python -m tests.pg_server -- $(BIN)/python -m pytest --ignore=tests/browser

## Lint, import order and format (ruff), and types (mypy).
lint: $(STAMP)
	$(BIN)/ruff check powerbank tests bench migrations app.py
	$(BIN)/ruff format --check powerbank tests bench migrations app.py
	$(BIN)/mypy

## Collect every translatable text (powerbank/, templates/) into the Danish and Swedish catalogues, and
## list what still lacks a translation. Translate those in powerbank/translations/*/LC_MESSAGES/messages.po.
translations-extract: $(STAMP)
	$(BIN)/pybabel -q extract -F babel.cfg -k N_ --no-location --sort-output --width=120 --project PowerBank \
		-o powerbank/translations/messages.pot powerbank templates
	$(BIN)/pybabel -q update --no-fuzzy-matching --ignore-obsolete --width=120 -i powerbank/translations/messages.pot \
		-d powerbank/translations
	$(BIN)/python -m powerbank.tools.translations check || true

## Compile the catalogues (.mo, not kept in git; PowerBank also compiles a missing or stale one when it starts).
translations-compile: $(STAMP)
	$(BIN)/python -m powerbank.tools.translations compile

## Remove the local demo database (the next `make run` loads fresh demo data).
clean-db:
	rm -f var/powerbank.db var/powerbank.db-wal var/powerbank.db-shm

.PHONY: bench bench-quick bench-cluster bench-delivery bench-node

## Benchmark PowerBank beside a bare baseline (1,000 / 5,000 / 10,000 chargers), then one node alone vs three
## nodes on a throw-away PostgreSQL (10,000 chargers; skipped, loudly, without PostgreSQL); writes bench/RESULTS.md.
bench: $(STAMP)
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.cluster_bench
	$(BIN)/python -m bench.node_bench

## The same at 1,000 chargers only; writes bench/RESULTS-quick.md.
bench-quick: $(STAMP)
	$(BIN)/python -m bench.run --quick
	$(BIN)/python -m bench.cluster_bench --quick
	$(BIN)/python -m bench.node_bench --quick

## The cluster part alone at 1,000 chargers, a few minutes (for development); writes bench/RESULTS-quick.md.
bench-cluster: $(STAMP)
	$(BIN)/python -m bench.cluster_bench --quick

## One node at 20,000 chargers (memory, reconnect storm, fan-out against its floor) at 1,000 chargers, a few
## minutes; `python -m bench.node_bench` is the full one (part of `make bench`). Writes bench/RESULTS-quick.md.
bench-node: $(STAMP)
	$(BIN)/python -m bench.node_bench --quick

## Proof of delivery: chargers reporting every second during an activation (ramp to 7,500 on one node) and
## the record of a 10,000-charger activation (delivery figures, activation page); about 15 minutes.
bench-delivery: $(STAMP)
	$(BIN)/python -m bench.delivery_bench
