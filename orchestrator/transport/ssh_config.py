"""An OpenSSH client config (`~/.ssh/config`) read as `ssh` reads it, with the file and line behind each value.

paramiko's `SSHConfig` does the resolving (Host / Match blocks, first value wins, `%h`-style tokens); this
module only maps its answer onto orch's instance fields and finds the line each value was written on, so that
`orch show` can say "~/.ssh/config:4 (Host qwen-g5)". Nothing here connects anywhere.

    found = lookup(Path("~/.ssh/config"), "qwen-g5")
    found["host"]  -> ("203.0.113.10", "~/.ssh/config:2 (Host qwen-g5)")
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
from pathlib import Path

from ..errors import InputError

# orch field -> ssh_config keyword (lower case, as paramiko returns them)
KEYWORDS = {"host": "hostname", "user": "user", "port": "port", "key": "identityfile",
            "identities_only": "identitiesonly", "jump": "proxyjump",
            "server_alive_interval": "serveraliveinterval", "server_alive_count_max": "serveralivecountmax"}
_LINE = re.compile(r"^\s*(\w+)\s*(?:=\s*|\s+)(.*?)\s*$")


def default_path() -> Path:
    return Path(os.path.expanduser("~/.ssh/config"))


def shown(path: Path) -> str:
    """The path as a user writes it: `~/.ssh/config` rather than /home/me/.ssh/config."""
    home = os.path.expanduser("~")
    text = str(path)
    return "~" + text[len(home):] if home not in ("", "/") and text.startswith(home + os.sep) else text


@functools.lru_cache(maxsize=8)
def _parsed(path: str, mtime_ns: int, size: int):
    """One parse per file version, however many instances and hops look things up in it."""
    return _parse(Path(path)), _text(Path(path))


def _text(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines()


def _parse(path: Path):
    import paramiko

    try:
        return paramiko.SSHConfig.from_path(str(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read ssh config {path}: {getattr(exc, 'strerror', None) or exc}",
                         hint="fix the file, or set ssh_config: false on the instance") from None
    except Exception as exc:  # paramiko raises ConfigParseError / ValueError for a bad line
        raise InputError(f"{path}: not a valid ssh config ({exc})",
                         hint="`ssh -G HOST -F FILE` shows what OpenSSH makes of it") from None


def _host_matches(patterns: list[str], alias: str) -> bool:
    """OpenSSH `Host` patterns: `*`/`?` wildcards, `!` negates (a negated match rules the block out)."""
    matched = False
    for pattern in patterns:
        if pattern.startswith("!"):
            if fnmatch.fnmatch(alias, pattern[1:]):
                return False
        elif fnmatch.fnmatch(alias, pattern):
            matched = True
    return matched


def _lines(path: Path, text: list[str], alias: str) -> dict[str, str]:
    """keyword -> 'file:line (Host pattern)' of the first line that sets it in a block applying to `alias`
    (a `Match` block counts as applying: paramiko decided it did when it returned the value)."""
    found: dict[str, str] = {}
    block, applies = "", True
    for number, raw in enumerate(text, 1):
        m = _LINE.match(raw.split("#", 1)[0]) if not raw.lstrip().startswith("#") else None
        if not m:
            continue
        word, value = m.group(1).lower(), m.group(2)
        if word == "host":
            block, applies = f"Host {value}", _host_matches(value.split(), alias)
        elif word == "match":
            block, applies = f"Match {value}", True
        elif applies and word not in found:
            found[word] = f"{shown(path)}:{number} ({block})" if block else f"{shown(path)}:{number}"
    return found


def lookup(path: Path, alias: str) -> dict[str, tuple[object, str]]:
    """The orch fields `alias` resolves to in the config at `path`: field -> (value, origin). Only what the
    file sets is returned (no OpenSSH defaults), so the inventory's own values and defaults still apply."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise InputError(f"cannot read ssh config {path}: {exc.strerror}",
                         hint="fix the file, or set ssh_config: false on the instance") from None
    config, text = _parsed(str(path), stat.st_mtime_ns, stat.st_size)
    answer = config.lookup(alias)
    origins = _lines(path, text, alias)
    out: dict[str, tuple[object, str]] = {}
    for name, word in KEYWORDS.items():
        if word not in answer or word not in origins:
            continue
        value = answer[word]
        where = origins[word]
        try:
            out[name] = (_convert(name, value), where)
        except ValueError:
            raise InputError(f"{where}: {word} {value!r} is not valid", hint=f"fix line {where}") from None
    return out


def _convert(name: str, value):
    if name == "key":
        files = value if isinstance(value, list) else [value]
        files = [os.path.expanduser(f) for f in files]
        return next((f for f in files if os.path.isfile(f)), files[0])
    if name == "port":
        return int(value)
    if name == "identities_only":
        return str(value).lower() == "yes"
    if name == "jump":
        return [] if str(value).lower() == "none" else [h.strip() for h in str(value).split(",") if h.strip()]
    if name == "server_alive_interval":
        return float(value)
    if name == "server_alive_count_max":
        return int(value)
    return str(value)


__all__ = ["KEYWORDS", "default_path", "lookup", "shown"]
