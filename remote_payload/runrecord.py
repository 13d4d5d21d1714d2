"""`RUN/run.json`: what a training run was, written at start ("running") and completed at the end.

Sections: job, recipe (every resolved value), seed, versions, hardware, env, dataset (sha256, counts,
over-length drops), style_tokens, chat_template_sha256, parameters (trainable/total), training (steps, loss,
resumed_from, early_stopped), best (the winning evaluation), plan (the controller's, `train --plan`) and
plan_check (planned vs measured: plan_check.py), peak_memory, timings, adapter, eval, status (`runstate.Status`: "running" | "succeeded" |
"failed") with error, and attempts (one entry per invocation, numbered: a resumed run keeps its history; an
attempt whose process died while "running" is closed as "lost" when the next one starts).
Writes are atomic (temp file + rename), so a reader never sees half a document.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import socket
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from .runstate import Status

LIBRARIES = ("torch", "transformers", "peft", "accelerate", "bitsandbytes", "tokenizers", "safetensors",
             "tensorboard")


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def hardware() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"host": socket.gethostname(), "platform": platform.platform(),
                            "cpu_count": os.cpu_count(), "torch_cuda": torch.version.cuda,
                            "cuda_available": torch.cuda.is_available(), "gpus": []}
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            info["gpus"].append({"index": index, "name": props.name, "memory_bytes": props.total_memory,
                                 "capability": f"{props.major}.{props.minor}"})
        info["cudnn"] = torch.backends.cudnn.version()
    return info


def peak_memory() -> dict[str, Any]:
    import torch

    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    peak: dict[str, Any] = {"cpu_max_rss_bytes": rss_kib * 1024}
    if torch.cuda.is_available():
        peak["gpu_max_allocated_bytes"] = torch.cuda.max_memory_allocated()
        peak["gpu_max_reserved_bytes"] = torch.cuda.max_memory_reserved()
    return peak


class RunRecord:
    """Owns RUN/run.json."""

    def __init__(self, run_dir: Path, writes: bool = True):
        self.path = run_dir / "run.json"
        self.writes = writes                  # False on DDP ranks > 0: rank 0 alone keeps run.json
        self.data: dict[str, Any] = {}
        self.previous: dict[str, Any] = {}    # run.json of the attempt before this one (resume / extra epochs)
        self._t0 = time.monotonic()

    def load_existing(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None

    def start(self, job: dict[str, Any], argv: list[str], resume: bool, extra_epochs: int) -> None:
        self.previous = self.load_existing() or {}
        earlier = [dict(a) for a in self.previous.get("attempts", [])]
        for old in earlier:   # an attempt still "running" now is one whose process died (kill -9, crash)
            if old.get("status") == Status.RUNNING.value:
                old.update(status=Status.LOST.value, closed_at=utc_now(),
                           note="its process ended without finishing; the next attempt found it running")
        attempt = {"attempt": len(earlier) + 1, "started_at": utc_now(), "argv": argv, "resume": resume,
                   "extra_epochs": extra_epochs, "pid": os.getpid(), "status": Status.RUNNING.value}
        # results of an earlier attempt are not carried over: this attempt writes its own
        self.data = {"job": job, "status": Status.RUNNING.value, "error": None, "started_at": utc_now(),
                     "finished_at": None, "attempts": [*earlier, attempt], "timings": {},
                     "versions": library_versions(), "python_executable": sys.executable}
        self.save()

    @property
    def attempt(self) -> int:
        return self.data["attempts"][-1]["attempt"]

    def update(self, **sections: Any) -> None:
        self.data.update(sections)
        self.save()

    def timing(self, phase: str, seconds: float) -> None:
        self.data.setdefault("timings", {})[phase] = round(seconds, 3)
        self.save()

    def finish(self, status: str, error: BaseException | None = None) -> None:
        self.data["status"] = status
        self.data["finished_at"] = utc_now()
        self.data["error"] = None if error is None else {"type": type(error).__name__, "message": str(error)}
        self.data.setdefault("timings", {})["total_seconds"] = round(time.monotonic() - self._t0, 3)
        try:
            self.data["peak_memory"] = peak_memory()
        except Exception:  # noqa: BLE001 - the record must still be written when torch itself is the problem
            self.data["peak_memory"] = None
        attempt = self.data["attempts"][-1]
        attempt.update(status=status, finished_at=self.data["finished_at"])
        self.save()

    def save(self) -> None:
        if not self.writes:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".run.json.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)
