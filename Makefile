# The two commands a newcomer runs: `make demo` and `make test`. Both set themselves up in .venv.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.orch-installed
# torch first, pinned: this machine carries a CPU wheel of 2.13.0; any other version pulls GBs of CUDA.
TORCH  ?= torch==2.13.0

.PHONY: install system-deps test demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml remote_payload/requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e '.[payload,test]'
	touch $(STAMP)

# The tests start a real OpenSSH sshd on 127.0.0.1: install it when missing (as root, with apt-get).
system-deps:
	@if ! command -v sshd >/dev/null 2>&1 && [ ! -x /usr/sbin/sshd ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing openssh-server: the tests start a real sshd on 127.0.0.1"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null; \
	  else \
	    echo "the tests need OpenSSH's sshd: sudo apt-get install openssh-server" >&2; exit 1; \
	  fi; \
	fi

test: $(STAMP) system-deps
	$(PY) -m pytest -q $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) demo/run_demo.py

bench: $(STAMP)
	$(PY) bench/preflight.py
	$(PY) bench/sync.py
	$(PY) bench/transfer.py
	$(PY) bench/packing.py

clean:
	rm -rf .orch .pytest_cache build *.egg-info
