# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install sysdeps run test gen gen-check lint typecheck unit bench bench-quick clean

$(STAMP): pyproject.toml setup.py pykbroker/records/record_walk.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# System packages the tests use: kcat and ZooKeeper (Debian's packages; a ZOOKEEPER_HOME
# holding an Apache release does instead). One apt-get update, then whatever is missing.
sysdeps:
	@missing=""; \
	command -v kcat >/dev/null 2>&1 || missing="$$missing kcat"; \
	[ -e /usr/share/zookeeper/bin/zkServer.sh ] || [ -e "$$ZOOKEEPER_HOME/bin/zkServer.sh" ] \
	  || missing="$$missing zookeeper"; \
	[ -z "$$missing" ] || { \
	  echo "installing$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing >/dev/null; }

run: $(STAMP)
	$(PY) -m pykbroker

gen: $(STAMP)
	$(PY) -m pykbroker.protocol.codegen

gen-check: $(STAMP)
	$(PY) -m pykbroker.protocol.codegen --check

lint: $(STAMP)
	$(VENV)/bin/ruff check pykbroker tests compat_tests benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(PY) -m pytest -q tests

test: $(STAMP) sysdeps gen-check lint typecheck
	$(PY) -m pytest -q -p no:cacheprovider

# Performance harness (issue #8): fetches the peer broker (Tansu) into benchmarks/.peers/,
# then prints the tables and a JSON line. Never part of `make test`.
bench: $(STAMP)
	$(PY) benchmarks/codec_bench.py
	$(PY) benchmarks/fetch_peers.py
	$(PY) benchmarks/perf.py

bench-quick: $(STAMP)
	$(PY) benchmarks/fetch_peers.py
	$(PY) benchmarks/perf.py --quick

# The cluster cell (issue #15): ZooKeeper + 3 brokers, RF 3 against RF 1 with acks=all, and
# end-to-end latency at 1,000 msg/s with RF 3 (3-4 min on 2 cores). Never part of `make test`.
.PHONY: bench-cluster
bench-cluster: $(STAMP)
	$(PY) benchmarks/cluster_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
