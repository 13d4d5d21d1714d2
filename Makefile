# The two commands a newcomer runs: `make demo` and `make test`. Both set themselves up in .venv.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.orch-installed
# torch first, pinned: this machine carries a CPU wheel of 2.13.0; any other version pulls GBs of CUDA.
TORCH  ?= torch==2.13.0

.PHONY: install test demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml remote_payload/requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e '.[payload,test]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) demo/run_demo.py

bench: $(STAMP)
	$(PY) bench/preflight.py
	$(PY) bench/sync.py
	$(PY) bench/transfer.py

clean:
	rm -rf .orch .pytest_cache build *.egg-info
