# ordo: `make run` starts a local cluster, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test proto bench jepsen lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/ordo dev

test: $(STAMP)
	npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
	$(VENV)/bin/ruff check ordo coordinator shard
	$(VENV)/bin/mypy
	$(PY) -m pytest -q

proto: $(STAMP)
	$(PY) -m grpc_tools.protoc -Iproto --python_out=. --grpc_python_out=. --pyi_out=. proto/ordo/v1/*.proto

bench: $(STAMP)
	sh bench/install.sh
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) -m bench.run

jepsen: $(STAMP)
	$(PY) jepsen-style/suite.py --out results/jepsen

lint: $(STAMP)
	$(VENV)/bin/ruff check ordo coordinator shard
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build *.egg-info
