"""What the sync prints: JSON lines for the controller, one summary document, or short lines for a person."""

from __future__ import annotations

import json
import os
import sys
import threading

from .names import human


class Reporter:
    """Progress for the controller (JSON lines), a summary document, or plain lines for a person."""

    def __init__(self, mode: str):
        self.mode = mode          # "events" | "json" | "human"
        self.broken = False
        self._lock = threading.Lock()

    def event(self, name: str, /, **fields) -> None:
        if self.mode == "events":
            self._write(json.dumps({"event": name, **fields}, separators=(",", ":")) + "\n")
        elif self.mode == "human":
            line = _human(name, fields)
            if line:
                sys.stderr.write(line + "\n")
                sys.stderr.flush()

    def document(self, doc: dict) -> None:
        if self.mode == "json":
            self._write(json.dumps(doc, indent=2) + "\n")

    def fail(self, message: str, hint: str | None, kind: str, code: int) -> None:
        self.event("error", message=message, hint=hint, kind=kind, exit_code=code)
        self.document({"ok": False, "error": message, "hint": hint, "kind": kind, "exit_code": code})
        sys.stderr.write(f"s3sync: error: {message}\n" + (f"  hint: {hint}\n" if hint else ""))
        sys.stderr.flush()

    def _write(self, text: str) -> None:
        if self.broken:
            return
        with self._lock:
            try:
                sys.stdout.write(text)
                sys.stdout.flush()
            except (BrokenPipeError, ValueError, OSError):
                # The controller went away (SSH dropped): stop cleanly so that the next run resumes.
                self.broken = True
                try:
                    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - replaces stdout for good
                except OSError:
                    pass


def _human(name: str, f: dict) -> str | None:
    if name == "start":
        return (f"s3sync: {f['source']} -> {f['dest']}: {f['files']} files, {human(f['bytes'])}; "
                f"to download {f['download_files']} files, {human(f['download_bytes'])}")
    if name == "file":
        return f"  {f['path']} ({human(f['bytes'])})"
    if name == "repaired":
        return f"  repaired {f['path']}: was gzip-compressed ({human(f['stored_bytes'])} -> {human(f['bytes'])})"
    if name == "warning":
        return f"  warning: {f['message']}"
    if name == "waiting":
        holder = f.get("holder") or {}
        return f"s3sync: waiting for another deploy (pid {holder.get('pid', '?')}, {holder.get('what', '?')})"
    if name == "done":
        return (f"s3sync: done: {f['downloaded_files']} downloaded ({human(f['downloaded_bytes'])}, "
                f"{f['rate_mb_s']:.0f} MB/s), {f['skipped_files']} already present, "
                f"{len(f['repaired'])} repaired, in {f['seconds']:.1f}s")
    return None
