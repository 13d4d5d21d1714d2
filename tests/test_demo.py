"""`make demo` on this machine: loopback S3 with a gzipped-JSON tiny Qwen3, then preflight, train,
fetch-adapter and eval against the `local` instance, ending with the separation table and the adapter."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.timeout(900)
def test_the_demo_trains_fetches_and_separates_terse_from_verbose(tmp_path):
    env = {**os.environ, "ORCH_DEMO_DIR": str(tmp_path / "demo"), "ORCH_LOCAL_DIR": str(tmp_path / "local")}
    p = subprocess.run([sys.executable, "demo/run_demo.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=880)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-4000:]
    # the sync's own repair report, for each file the bucket stores gzipped (with and without the header)
    assert "repaired config.json: it was stored gzip-compressed (Content-Encoding: gzip)" in out
    assert "repaired tokenizer_config.json: it was stored gzip-compressed," in out
    assert "(gate 3.0): passed" in out
    adapters = list((tmp_path / "demo" / "adapters" / "demo").glob("*/adapter/manifest.json"))
    assert len(adapters) == 1
    assert str(adapters[0].parent) in p.stdout.strip().splitlines()[-1]  # it ends with the adapter's path
    runs = list((tmp_path / "local" / "work" / "runs").iterdir())
    record = json.loads((runs[0] / "run.json").read_text())
    assert record["status"] == "succeeded"
