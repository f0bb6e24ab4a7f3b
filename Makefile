# Every target creates .venv on first use (idempotent) and installs the pinned CPU
# build of torch before the project, so pip never pulls the multi-GB CUDA wheel.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_PIN := torch==2.13.0

.PHONY: venv demo test test-fast lint lint-fix bench-quick clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PIN)
	$(PY) -m pip install --quiet -e '.[all,lint]'
	# SpikingJelly without its dependencies (they would replace the CPU torch); its real runtime imports:
	$(PY) -m pip install --quiet --no-deps spikingjelly==2.0.0 && $(PY) -m pip install --quiet loguru tqdm
	touch $(STAMP)

demo: $(STAMP)
	bash scripts/demo.sh

# Tests run in one worker per core (pytest-xdist), each test file in one worker, so a module's
# expensive fixture (a trained model, the quick benchmark suite) is built once.
test: $(STAMP)
	$(PY) -m pytest -q -ra -n auto --dist loadfile

# The inner loop: no subprocess, browser, sanitizer, benchmark or slow test (marked in tests/).
test-fast: $(STAMP)
	$(PY) -m pytest -q -ra -m "not slow and not subprocess and not browser and not benchmark"

# What CI checks besides the tests; `make lint-fix` applies ruff's fixes and formatting.
lint: $(STAMP)
	$(VENV)/bin/ruff check albsnn_compress tests benchmarks
	$(VENV)/bin/ruff format --check albsnn_compress tests benchmarks
	$(VENV)/bin/mypy

lint-fix: $(STAMP)
	$(VENV)/bin/ruff check --fix albsnn_compress tests benchmarks
	$(VENV)/bin/ruff format albsnn_compress tests benchmarks

bench-quick: $(STAMP)
	$(PY) -m benchmarks.run_all --quick
	OMP_NUM_THREADS=1 $(PY) -m benchmarks.bench_training --quick
	$(PY) -m benchmarks.bench_trust --quick
	$(PY) -m benchmarks.bench_fidelity --quick
	$(PY) -m benchmarks.bench_recipe --quick
	$(PY) -m benchmarks.bench_albsnn_mode --quick
	$(PY) -m benchmarks.bench_precision --quick

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
