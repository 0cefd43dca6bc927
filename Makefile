# ScanTrail: one set of commands for laptops and CI.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install up down status demo test test-fast lint typecheck schema bench bench-trace bench-qr bench-stream bench-sink bench-backfill clean

help: ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@bash deploy/local/system-deps.sh
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install ScanTrail with its dev tools

up: install ## Start Kafka and InfluxDB on 127.0.0.1 (built and cached on first use)
	@bash deploy/local/services.sh up

down: ## Stop the local services
	@bash deploy/local/services.sh down

status: ## Say which services run
	@bash deploy/local/services.sh status

demo: up ## Simulate a minute of gates, process, sink, print a summary
	$(PY) -m scantrail.cli demo

test: up ## Run every test: unit and integration against the real services
	$(PY) -m pytest

test-fast: install ## Unit tests only (no services)
	$(PY) -m pytest -m "not integration and not slow"

lint: install ## ruff check and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install ## mypy strict on the packages
	$(VENV)/bin/mypy

schema: install ## Export the event contract as JSON Schema into docs/schema
	$(PY) -m scantrail.cli schema --out docs/schema

bench: bench-trace bench-qr bench-stream bench-sink bench-backfill ## Run every benchmark (results in bench/results)

bench-trace: install ## Contact index build and trace latency vs DuckDB
	$(PY) bench/bench_trace.py

bench-qr: install ## QR decode rate and speed vs single decoders
	$(PY) bench/bench_qr.py

QUIX_VENV := .venv-quix
QUIX_STAMP := $(QUIX_VENV)/.installed

# Quix Streams (the bench-stream peer) pins confluent-kafka < 2.13; the project
# pins 2.16.1, so the peer gets its own venv instead of an extra of .[dev].
$(QUIX_STAMP): bench/requirements-quix.txt
	@test -x $(QUIX_VENV)/bin/python || $(PYTHON) -m venv $(QUIX_VENV)
	$(QUIX_VENV)/bin/python -m pip install -q -r bench/requirements-quix.txt
	@touch $(QUIX_STAMP)

bench-stream: up $(QUIX_STAMP) ## Worker vs faust's floor and Quix; state size, 2 processes, latency, recovery
	$(PY) bench/bench_stream.py $(BENCH_STREAM_ARGS)

bench-sink: up ## Sink points/s vs direct influxdb-client writes
	$(PY) bench/bench_sink.py

bench-backfill: up ## What a watched-bucket backfill costs (Flux on a 560k-point bucket)
	$(PY) bench/bench_backfill.py

clean: ## Remove the virtualenv and caches of this checkout (not the service caches)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
