# `make demo` and `make test` each create .venv and install into it first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
PYTEST_ARGS ?=

.PHONY: demo test lint bench clean

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e .
	touch $@

$(VENV)/.test: $(VENV)/.base
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

demo: $(VENV)/.base
	$(PY) -m loopauth.demo

test: $(VENV)/.test
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.test
	$(PY) -m pytest tests/test_lint.py

bench: $(VENV)/.test
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .loopauth-demo build dist *.egg-info
