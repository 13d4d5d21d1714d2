"""Running the payload's long instance-side tools (export, quantize, venvs, serve) from the controller: their
progress lines shown while they work, their one JSON answer read at the end, their refusals turned into one
error with its hint.

The tools (remote_payload/export, quantize.py, venvs.py, serve/) print progress on stderr ("== step",
"venvs: ...") and, with --json, one JSON document on stdout; on failure "<tool>: message" and maybe
"hint: ..." on stderr, exit 2 for a refusal (bad input, an impossible export) and 1 for a failed check.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Callable

from .errors import CheckFailed, InputError, OrchError, RemoteError

POLL_S = 1.0


@dataclass
class ToolResult:
    code: int
    stdout: str
    stderr: str
    seconds: float

    def document(self) -> dict | None:
        """The JSON document the tool printed last on stdout (libraries may print before it), or None."""
        text = self.stdout.rstrip()
        starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n" and text[i + 1:i + 2] == "{"]
        for start in reversed(starts):
            try:
                doc = json.loads(text[start:])
            except ValueError:
                continue
            if isinstance(doc, dict):
                return doc
        return None


def stream_tool(transport, argv: list[str], *, cwd: str | None, env: dict | None = None,
                progress: tuple[str, ...] = ("== ",), say: Callable[[str], None] = lambda _m: None,
                label: str = "", timeout: float = 6 * 3600) -> ToolResult:
    """Run `argv` on the instance until it ends, passing its stderr lines that start with one of `progress`
    to `say` as they come. A Ctrl-C here kills it there."""
    from .transport.base import Stalled

    started = time.monotonic()
    proc = transport.open(argv, cwd=cwd, env=env)
    proc.close_stdin()
    proc.set_timeout(POLL_S)
    out, shown = bytearray(), 0
    try:
        while True:
            try:
                chunk = proc.read(65536)
            except Stalled:
                chunk = None
            shown = _show(proc.stderr_text(), shown, progress, say, label)
            if chunk == b"":
                break
            if chunk:
                out += chunk
            if time.monotonic() - started > timeout:
                raise RemoteError(f"`{argv[2] if len(argv) > 2 else argv[0]}` ran past {timeout:.0f} s; killed")
        code = proc.wait(60)
    except BaseException:
        proc.kill()
        raise
    _show(proc.stderr_text(), shown, progress, say, label, final=True)
    return ToolResult(code, out.decode("utf-8", "replace"), proc.stderr_text(), time.monotonic() - started)


def _show(text: str, shown: int, progress: tuple[str, ...], say, label: str, final: bool = False) -> int:
    """Say the complete new lines of `text` past offset `shown` that are progress; the new offset."""
    end = len(text) if final else text.rfind("\n") + 1
    for line in text[shown:end].splitlines():
        if line.startswith(progress):
            say(f"{label}{line.lstrip('= ').strip()}")
    return max(shown, end)


def tool_error(result: ToolResult, tool: str, where: str, *, hint: str | None = None) -> OrchError:
    """The error for a tool that failed: its own "<tool>: message" / "hint: ..." lines when it wrote them
    (exit 2: InputError, a refusal; else CheckFailed), else the tail of its stderr (RemoteError)."""
    lines = result.stderr.strip().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(f"{tool}: ")]
    if result.code == 0:
        out = "\n    ".join(result.stdout.strip().splitlines()[-8:]) or "(nothing)"
        return RemoteError(f"{where}: `{tool}` ended without its JSON answer; its output ended with:\n    {out}",
                           hint="this orch and the payload on the instance may not match: run with -v, report it")
    if not starts:
        tail = "\n    ".join(lines[-12:]) or "(no output)"
        return RemoteError(f"{where}: `{tool}` exited with {result.code}:\n    {tail}", hint=hint)
    body = lines[starts[-1]:]
    message_lines, own_hint = [], None
    for line in body:
        if line.strip().startswith("hint: ") and own_hint is None:
            own_hint = line.strip()[len("hint: "):]
        elif own_hint is None:
            message_lines.append(line)
    message = "\n".join(message_lines)[len(tool) + 2:].strip()
    kind = InputError if result.code == 2 else CheckFailed
    return kind(f"{where}: {message}", hint=own_hint or hint)


def tool_venv(transport, remote, kind: str, device: str, say: Callable[[str], None]) -> dict:
    """The serving or quantizing venv on the instance, built there the first time (remote_payload/venvs.py,
    run by the instance's python3 from the current payload): {"python", "venv", "created", ...}."""
    remote.ensure_payload(say)
    argv = [remote.instance.python, "-m", "remote_payload.venvs", "install", kind, "--root",
            remote.layout.tool_venvs, "--device", device, "--json"]
    say(f"{remote.instance.name}: the {kind} venv (built once: minutes; then reused)")
    result = stream_tool(transport, argv, cwd=remote.payload_dir, progress=("venvs: ",), say=say,
                         label=f"{remote.instance.name}: ")
    doc = result.document()
    if result.code != 0 or doc is None:
        raise tool_error(result, "venvs", remote.instance.name,
                         hint="the pip output above says what failed; re-running resumes from a clean venv")
    return doc
