# shopfloor: `make demo` runs every task on built-in synthetic data, `make test` runs the test suite,
# `make bench` runs the real-data benchmarks (needs ../shared/datasets or SHOPFLOOR_DATASETS).
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: setup demo test bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/shopfloor demo --out demo_out

test: setup
	$(PY) -m pytest -q

bench: setup
	@set -e; for script in benchmarks/bench_*.py; do echo "== $$script"; $(PY) $$script; done

clean:
	rm -rf demo_out runs benchmarks/work src/*.egg-info
