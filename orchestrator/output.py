"""Where output goes: people read stderr (rich), programs read stdout (one JSON document with --json).

Everything printed passes through `settings.mask`, so a secret from `.env` never shows.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Iterable

from .settings import mask

_console = None


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
