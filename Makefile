# One entry point for set-up, the default training demo and the test suite.
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo train smoke test test-fast lint clean

$(STAMP): setup.cfg pyproject.toml
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install --upgrade pip
	$(VENV)/bin/pip install -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/python -m synthesizer_jax.demo

# The default experiment: prepare the offline prose corpus (idempotent), train 10-15 min on a CPU,
# evaluate, print a sample and the validation perplexity. Re-running resumes the run.
train: $(STAMP)
	$(VENV)/bin/python -m synthesizer_jax.data.prepare --data_dir data --tasks offline_lm_prose --apt_update --cache
	$(VENV)/bin/python train.py --config configs/offline_lm_prose.py --workdir workdirs/offline_lm_prose \
		--config.data_dir=data

# The pre-flight check of the machine you are about to trust: the real loop, small, for every
# model shape x a few attention kinds on the cached offline tasks (built if missing, where
# TensorFlow and seqio are installed); asserts and prints one table, exits 1 on a failure.
# About 3 min on a shared 2-core CPU (size cpu); size gpu (bf16) is meant for under 2 min on one GPU.
smoke: $(STAMP)
	$(VENV)/bin/python -m synthesizer_jax.smoke --data_dir data

# Two pytest workers (pytest-xdist; each test file's fixtures are built per worker; three were
# slower on 2 cores: 860 s against 719 s), tests handed out as workers free up (worksteal: the
# suite's longest tests are two-process runs); the 30 slowest are listed at the end of every
# run (CI's too): where the suite's time goes.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(VENV)/bin/ruff check synthesizer_jax tests benchmarks experiments configs train.py eval.py
	$(VENV)/bin/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal --durations=30

# The inner loop: attention, models, configs, registries, the data registry and the layering
# and path checks (no training runs, no subprocesses, no servers).
FAST := tests/test_attention.py tests/test_models.py tests/test_config.py tests/test_registry.py \
	tests/test_positions.py tests/test_costs.py tests/test_data_registry.py tests/test_layers.py \
	tests/test_paths.py tests/test_imports.py
test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -q -n $(TEST_WORKERS) $(FAST)

lint: $(STAMP)
	$(VENV)/bin/ruff check synthesizer_jax tests benchmarks experiments configs train.py eval.py

clean:
	rm -rf $(VENV) build *.egg-info
