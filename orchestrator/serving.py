"""`orch serve`: a run's export served on the instance by vLLM's OpenAI server plus the /generate API.

On the instance: the serving venv (remote_payload/venvs.py: vllm 0.32 with its own torch/transformers, built
once in WORK/venvs/serve-<device>-<sha>), then `python3 -m remote_payload.serve up` (systemd units where
systemd runs and we are root, else its restart supervisor), which refuses a raw adapter or a failed export
before vLLM starts and returns once /health is healthy. Both servers bind the instance's 127.0.0.1; `orch
tunnel` reaches them. What was started is kept in WORK/serve/ (one served model per instance), so `orch serve
status|logs|stop` need nothing else. Preflight first: a busy GPU, too little VRAM or an active run is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .errors import CheckFailed, InputError, RemoteError
from .remote import Remote
from .remote_tools import stream_tool, tool_error, tool_venv

PREFERRED = ("lora", "merged", "merged-w4a16")        # which of a run's exports `orch serve` picks
ACTIONS = ("status", "logs", "stop")


@dataclass(frozen=True)
class ServeRequest:
    port: int = 8000                 # vLLM, on the instance's 127.0.0.1
    api_port: int = 8080             # the /generate API
    device: str = "auto"
    max_model_len: int | None = None
    wait: float = 900.0

    def __post_init__(self):
        for name in ("port", "api_port"):
            value = getattr(self, name)
            if not 1 <= value <= 65535:
                raise InputError(f"--{name.replace('_', '-')} {value}: a port is 1-65535")
        if self.port == self.api_port:
            raise InputError(f"--port and --api-port are both {self.port}", hint="give the API another port")
        if self.device not in ("auto", "cpu", "cuda"):
            raise InputError(f"--device {self.device!r}: one of auto, cpu, cuda")
        if self.wait <= 0:
            raise InputError(f"--wait {self.wait}: seconds, > 0")


def serve_preflight(transport, instance, force: bool, say: Callable[[str], None]):
    """Preflight without a job (no dataset, no weights listing): refuse a busy GPU, too little VRAM, another
    active orch run, unless --force. The report (its probe says whether there is a GPU)."""
    from .preflight import run_preflight

    report = run_preflight(instance, None, transport=transport)
    failed = [c for c in report.checks if not c.ok]
    if report.error or failed:
        reasons = "; ".join(f"{c.name}: {c.detail}" for c in failed) or report.error
        if not force:
            hint = next((c.fix for c in failed if getattr(c, "fix", None)), None)
            raise CheckFailed(f"cannot serve on {instance.name}: {reasons}",
                              hint=(hint + "; " if hint else "") + f"see `orch preflight --instance "
                                                                   f"{instance.name}`, or pass --force")
        say(f"preflight failed on {instance.name} ({reasons}); going on because of --force")
    return report


def resolve_device(requested: str, report) -> str:
    if requested != "auto":
        return requested
    return "cuda" if (report.probe or {}).get("gpus") else "cpu"


def choose_export(have: dict, wanted: str | None) -> str | None:
    if wanted:
        return wanted if wanted in have else None
    return next((label for label in PREFERRED if label in have), None)


def serve_up(transport, instance, export_path: str, base: str | None, request: ServeRequest, device: str,
             say: Callable[[str], None]) -> dict:
    """Install/reuse the serving venv, then `serve up`; its JSON once healthy (serve.json + health + seconds)."""
    remote = Remote(transport, instance)
    venv = tool_venv(transport, remote, "serve", device, say)
    argv = [instance.python, "-m", "remote_payload.serve", "up", "--export", export_path, "--python",
            venv["python"], "--state-dir", remote.layout.serve_dir, "--port", str(request.port), "--api-port",
            str(request.api_port), "--device", device, "--wait", f"{request.wait:g}", "--json"]
    argv += ["--base", base] if base else []
    argv += ["--max-model-len", str(request.max_model_len)] if request.max_model_len else []
    say(f"{instance.name}: starting vLLM and the API for {export_path} (waits for /health: minutes on a CPU)")
    result = stream_tool(transport, argv, cwd=remote.payload_dir, say=say, timeout=request.wait + 300)
    doc = result.document()
    if result.code != 0 or doc is None:
        raise tool_error(result, "serve", instance.name,
                         hint=f"`orch serve logs --instance {instance.name}` shows vLLM's log")
    return {**doc, "venv": venv}


def serve_action(transport, instance, action: str, *, process: str = "vllm", lines: int = 200):
    """`serve status|stop` (their JSON) or `serve logs` (text), on what `orch serve` started there."""
    if action not in ACTIONS:
        raise InputError(f"unknown serve action {action!r} (one of {', '.join(ACTIONS)})")
    remote = Remote(transport, instance)
    remote.ensure_payload()
    argv = [instance.python, "-m", "remote_payload.serve", action, "--state-dir", remote.layout.serve_dir]
    argv += ["--process", process, "--lines", str(lines)] if action == "logs" else ["--json"]
    result = transport.run(argv, cwd=remote.payload_dir, check=False, timeout=300)
    if result.exit_code == 2:
        raise InputError(f"{instance.name}: nothing is served there ({result.err_text.strip()[-300:]})",
                         hint=f"start it with `orch serve JOB --instance {instance.name}`")
    if action == "logs":
        if result.exit_code != 0:
            raise RemoteError(f"{instance.name}: reading the serve log failed: {result.err_text.strip()[-600:]}")
        return result.text
    from .remote_tools import ToolResult

    doc = ToolResult(result.exit_code, result.text, result.err_text, 0.0).document()
    if doc is None:
        raise RemoteError(f"{instance.name}: `serve {action}` failed (exit {result.exit_code}): "
                          f"{result.err_text.strip()[-600:] or '(no output)'}")
    return doc


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


def run_bench(transport, instance, served: dict, requests: int, short_tokens: int, long_tokens: int,
              say: Callable[[str], None]) -> dict:
    """remote_payload.serve.bench against the served vLLM, in the serving venv (vLLM's own interpreter)."""
    remote = Remote(transport, instance)
    argv_v = served["vllm_argv"]
    argv = [argv_v[0], "-m", "remote_payload.serve.bench", "--export", served["export"], "--vllm-url",
            served["vllm_url"], "--requests", str(requests), "--short-tokens", str(short_tokens), "--long-tokens",
            str(long_tokens), "--json"]
    if served.get("kind") == "lora":
        argv += ["--base", argv_v[argv_v.index("--model") + 1]]
    say(f"{instance.name}: measuring latency ({requests} short and {requests} long answers)")
    result = stream_tool(transport, argv, cwd=remote.payload_dir, env={"PYTHONPATH": remote.payload_dir}, say=say)
    report = result.document()
    if result.code != 0 or report is None:
        raise tool_error(result, "bench", instance.name)
    return report
