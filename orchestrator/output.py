"""Where output goes: people read stderr (rich), programs read stdout (one JSON document with --json).

Everything orch prints passes through one path: `MaskedStream` wraps stdout and stderr at the CLI boundary
(`cli.main`), so messages, tables, progress, `-v` tracebacks and the remote log orch streams are all masked
with `settings.mask` -- a secret from `.env` never shows, whoever writes it.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Iterable, TextIO

from .settings import mask

_console = None


class MaskedStream:
    """A text stream that masks secrets before they reach the real one.

    Text is held back until a line ends (`\\n` or `\\r`) or the stream is flushed, so that a secret written in
    two pieces is still recognised. Everything else (isatty, fileno, encoding) is the wrapped stream's.
    """

    def __init__(self, stream: TextIO):
        self._stream = stream
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        cut = max(self._pending.rfind("\n"), self._pending.rfind("\r")) + 1
        if cut:
            self._stream.write(mask(self._pending[:cut]))
            self._pending = self._pending[cut:]
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self._stream.write(mask(self._pending))
            self._pending = ""
        self._stream.flush()

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def mask_process_output() -> None:
    """Put stdout and stderr of this process through `MaskedStream` (idempotent)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if not isinstance(stream, MaskedStream):
            setattr(sys, name, MaskedStream(stream))


def console():
    """The rich console for humans, on stderr so that stdout stays clean for --json."""
    global _console
    if _console is None:
        from rich.console import Console

        _console = Console(stderr=True, highlight=False, soft_wrap=True)
        if not _console.is_terminal:  # CI logs and pipes: wide enough that run ids and paths are never cut
            _console.width = 200
    return _console


def say(message: str, style: str | None = None) -> None:
    console().print(mask(message), style=style, markup=False)


def emit_json(doc: Any) -> None:
    """The one JSON document a --json command prints on stdout."""
    sys.stdout.write(mask(json.dumps(doc, indent=2, default=str)) + "\n")
    sys.stdout.flush()


def table(title: str, columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> None:
    from rich.table import Table

    t = Table(title=mask(title), title_justify="left")
    for column in columns:
        t.add_column(column)
    for row in rows:
        t.add_row(*(mask(str(cell)) for cell in row))
    console().print(t)


def human_bytes(n: float | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
