"""Serving an export with vLLM on the instance (`python3 -m remote_payload.serve up|status|logs|stop`).

Stdlib-only, run with any python3: `command.py` (the vLLM command line), `supervisor.py` (restarts where systemd
does not run), `systemd.py` (the unit where it does), `__main__.py` (up/status/logs/stop). Run in the serving
venv: `api.py` (/generate and /health) and `bench.py` (latency).
"""
