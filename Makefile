# The two commands of the README, and the steps they share.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test unit install lint bench clean

## make demo: local Kafka broker + worker + Prometheus + simulator (Ctrl-C stops)
demo: install
	deploy/local/setup.sh demo
	$(BIN)/watchfloor demo

## make test: unit tests (the counting path from source, then compiled), then integration
## tests against a real broker and Prometheus
test: install
	deploy/local/setup.sh test
	WATCHFLOOR_TEST_PURE=1 $(BIN)/pytest -q tests/unit
	$(BIN)/pytest -v --durations=15

## make unit: the fast loop, unit tests only (no broker, no Prometheus), ruff and mypy
unit: install
	$(BIN)/pytest -q tests/unit
	$(BIN)/ruff check streams tests
	$(BIN)/mypy

install: $(VENV)/.installed

# The counting path, compiled by mypyc at install (setup.py), and its tables written in
# C: a change to one of these compiles it again (streams/native.py MODULES and
# C_SOURCES; tests/unit/test_native.py keeps the lists equal).
NATIVE_SOURCES := streams/categories.py streams/events.py streams/validation.py streams/windows.py \
	streams/subjects.py streams/state.py streams/engine.py streams/state_journal.py streams/signals.py \
	streams/district_lines.py streams/_identities.c streams/_tallies.c streams/_deadlines.c \
	streams/_digests.c streams/_rfc3339.c streams/_schema_check.c streams/_crc32c.c \
	streams/_records.c

$(VENV)/.installed: pyproject.toml setup.py streams/native.py $(NATIVE_SOURCES)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev,rocksdb,bench]"
	touch $@

lint: install
	$(BIN)/ruff check streams tests
	$(BIN)/mypy

bench: install
	$(BIN)/pip install -q -e ".[bench]"
	$(BIN)/python -m tests.benchmarks.bench

clean:
	-deploy/kafka/kafkactl stop
	rm -rf $(VENV) .watchfloor deploy/kafka/.run
	rm -f streams/*.so *__mypyc.*.so streams/native.json
