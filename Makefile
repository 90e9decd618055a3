# One entry point for set-up, the default training demo and the test suite.
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test lint clean

$(STAMP): setup.cfg pyproject.toml
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install --upgrade pip
	$(VENV)/bin/pip install -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/python -m synthesizer_jax.demo

test: $(STAMP)
	$(VENV)/bin/ruff check synthesizer_jax tests benchmarks
	$(VENV)/bin/python -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check synthesizer_jax tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info
