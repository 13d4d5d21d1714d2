"""`orch export`: a finished run's adapter rewritten on the instance into what vLLM serves.

On the instance, where the base weights are: `python -m remote_payload.export` in the run's training venv
(`lora`: the embedding-LoRA adapter; `merged`: merged into a full-precision base), then, for `--quantize w4a16`,
`python -m remote_payload.quantize` in the quantizing venv (built once by remote_payload/venvs.py). Each
export lands in `RUN/exports/<label>/` (label `lora`, `merged`, `merged-w4a16`) with its export.json (checks)
and a sha256 manifest.json, so `orch fetch-adapter --export` fetches it verified like an adapter and
`orch serve` serves it. An export already there is reused unless --force.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Callable

from .errors import CheckFailed, InputError
from .remote import Remote
from .remote_tools import stream_tool, tool_error, tool_venv

FORMATS = ("lora", "merged")
QUANTIZE = ("w4a16",)
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class ExportRequest:
    fmt: str = "lora"
    quantize: str | None = None
    force: bool = False
    device: str = "auto"

    def __post_init__(self):
        if self.fmt not in FORMATS:
            raise InputError(f"--format {self.fmt!r}: one of {', '.join(FORMATS)}")
        if self.quantize not in (None, *QUANTIZE):
            raise InputError(f"--quantize {self.quantize!r}: one of {', '.join(QUANTIZE)}")
        if self.quantize and self.fmt != "merged":
            raise InputError("--quantize w4a16 quantizes a merged model, not a LoRA adapter",
                             hint="use --format merged --quantize w4a16")
        if self.device not in DEVICES:
            raise InputError(f"--device {self.device!r}: one of {', '.join(DEVICES)}")

    @property
    def label(self) -> str:
        return f"{self.fmt}-{self.quantize}" if self.quantize else self.fmt


def existing_exports(transport, instance, run: dict) -> dict[str, dict | None]:
    """{label: export.json} of the run's finished exports (read with the current payload's inspect_run)."""
    return Remote(transport, instance).json("inspect_run", run["run_dir"], what="listing the run's exports",
                                            timeout=60).get("exports") or {}


def check_exportable(instance, run: dict) -> None:
    if run.get("state") != "finished" or not run.get("has_adapter"):
        raise CheckFailed(f"{instance.name}: run {run['run_id']} is {run.get('state')} "
                          f"{'with' if run.get('has_adapter') else 'without'} a final adapter; only a finished "
                          "run's adapter is exported",
                          hint=f"wait for it (`orch logs --run {run['run_id']} --follow`), or name another with --run")


def export_run(transport, instance, run: dict, request: ExportRequest, say: Callable[[str], None]) -> dict:
    """Export (and quantize) the run's adapter on the instance; {"status": "exported"|"present", "label",
    "path", "record": export.json, "seconds"}."""
    check_exportable(instance, run)
    remote = Remote(transport, instance)
    remote.ensure_payload(say)
    have = existing_exports(transport, instance, run)
    if request.quantize:
        merged = ExportRequest("merged", None, request.force, request.device)
        if request.force or "merged" not in have:
            _export(transport, remote, run, merged, say)
        return _quantize(transport, remote, run, request, say)
    if request.label in have and not request.force:
        path = remote.layout.export(run["run_dir"], request.label)
        say(f"{instance.name}: the {request.label} export of run {run['run_id']} is already there ({path}); "
            "--force makes it again")
        return {"status": "present", "label": request.label, "path": path, "record": have[request.label],
                "seconds": 0.0}
    return _export(transport, remote, run, request, say)


def _export(transport, remote: Remote, run: dict, request: ExportRequest, say) -> dict:
    meta = run.get("meta") or {}
    out = remote.layout.export(run["run_dir"], request.label)
    argv = [meta["python"], "-m", "remote_payload.export", "--model-dir", meta["model_dir"], "--adapter",
            posixpath.join(run["run_dir"], "adapter"), "--out", out, "--format", request.fmt,
            "--device", request.device, "--force", "--json"]
    where = f"{remote.instance.name}: run {run['run_id']}"
    say(f"{where}: exporting ({request.fmt}) into {out}")
    result = stream_tool(transport, argv, cwd=remote.payload_dir, env=_env(meta), say=say, label=f"{where}: ")
    record = result.document()
    if result.code != 0 or record is None:
        raise tool_error(result, "export", where, hint=f"see {out}.partial/export.json on the instance")
    return {"status": "exported", "label": request.label, "path": out, "record": record,
            "seconds": round(result.seconds, 1)}


def _quantize(transport, remote: Remote, run: dict, request: ExportRequest, say) -> dict:
    venv = tool_venv(transport, remote, "quantize", request.device, say)
    merged = remote.layout.export(run["run_dir"], "merged")
    out = remote.layout.export(run["run_dir"], request.label)
    where = f"{remote.instance.name}: run {run['run_id']}"
    argv = [venv["python"], "-m", "remote_payload.quantize", "--export", merged, "--out", out, "--scheme",
            request.quantize, "--force", "--json"]
    say(f"{where}: quantizing ({request.quantize}) {merged} into {out}")
    result = stream_tool(transport, argv, cwd=remote.payload_dir, env=_env(run.get("meta") or {}), say=say,
                         label=f"{where}: ")
    record = result.document()
    if result.code != 0 or record is None:
        raise tool_error(result, "quantize", where)
    return {"status": "exported", "label": request.label, "path": out, "record": record,
            "seconds": round(result.seconds, 1)}


def _env(meta: dict) -> dict:
    env = {"PYTHONUNBUFFERED": "1"}
    gpu = (meta.get("env") or {}).get("CUDA_VISIBLE_DEVICES")
    return {**env, "CUDA_VISIBLE_DEVICES": gpu} if gpu else env


def summary(doc: dict) -> str:
    record = doc.get("record") or {}
    lengths = ((record.get("checks") or {}).get("lengths") or {})
    means = (lengths.get("export") or {}).get("mean_tokens") or {}
    shown = f"; TERSE {means.get('TERSE')} / VERBOSE {means.get('VERBOSE')} mean tokens" if means else ""
    verb = "already there" if doc["status"] == "present" else f"made in {doc['seconds']:.0f} s"
    checks = ", ".join(record.get("checks") or {}) or "none recorded"
    return (f"{doc['label']} export at {doc['path']} ({verb}), served as {record.get('served_name')!r}{shown}; "
            f"checks passed: {checks}")
