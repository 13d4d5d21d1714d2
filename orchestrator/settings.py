"""Variables for the inventory: `.env` first, then the process environment; `${VAR}` and `${VAR:-default}`.

`.env` wins over the environment on purpose: the project's file is the authority for which box an
instance is, so a stale `export QWEN_GPU_INSTANCE_IP=...` in some shell cannot redirect a deploy.
Every value remembers where it came from, so errors can name the variable and the file to fix.
A variable defined twice in `.env` is refused naming both lines: orch never picks one silently.

Secret values are registered for masking (`register_secret`): the values of variables whose names look
secret, and every value the inventory uses as a credential whatever its name. `mask(text)` replaces them;
`output.MaskedStream` puts every byte orch prints through it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError

REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|PASSPHRASE|ACCESS_KEY|CREDENTIAL|PRIVATE", re.I)
MASK = "****"
WHOLE_WORD_BELOW = 8   # shorter secrets ("k3y9") are masked only where they stand alone, so "demo" stays readable
                        # inside "demonstration" while the secret itself never shows

_secrets: set[str] = set()
_pattern: re.Pattern | None = None


def register_secret(value: str | None) -> None:
    global _pattern
    if value and value.strip() and value not in _secrets:
        _secrets.add(value)
        _pattern = None


def mask(text: str) -> str:
    """Replace every registered secret value in `text` (long ones anywhere, short ones as whole words)."""
    global _pattern
    if not _secrets or not text:
        return text
    if _pattern is None:
        parts = []
        for value in sorted(_secrets, key=len, reverse=True):
            escaped = re.escape(value)
            parts.append(escaped if len(value) >= WHOLE_WORD_BELOW else
                         rf"(?<![A-Za-z0-9_]){escaped}(?![A-Za-z0-9_])")
        _pattern = re.compile("|".join(parts))
    return _pattern.sub(MASK, text)


def is_secret_name(name: str) -> bool:
    return bool(SECRET_NAME.search(name)) and not name.endswith("_PATH")


def read_config_text(path: Path, what: str) -> str:
    """The text of a configuration file the user wrote; binary or non-UTF-8 content is bad input naming
    the file and the byte offset."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    nul = data.find(b"\0")
    if nul >= 0:
        raise InputError(f"{path}: this {what} is a binary file (a NUL byte at byte {nul}), not text",
                         hint=f"point orch at the right file, or rewrite {path.name} as UTF-8 text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(f"{path}:{line}: this {what} is not UTF-8 text (byte {exc.start} is "
                         f"0x{data[exc.start]:02x})",
                         hint=f"save {path.name} as UTF-8") from None


class MissingVariable(InputError):
    """A `${NAME}` the inventory uses is set nowhere."""


@dataclass
class Variables:
    """Where `${NAME}` values come from: a `.env` file, then the environment."""

    env_file: Path
    from_file: dict[str, str] = field(default_factory=dict)
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    lines: dict[str, int] = field(default_factory=dict)    # NAME -> its line in env_file

    @classmethod
    def load(cls, env_file: str | Path | None, *, explicit: bool = False) -> "Variables":
        """Read `env_file`. A missing default `.env` is fine; a missing file the user named is an error."""
        path = Path(env_file) if env_file else Path(".env")
        if not path.is_file() and explicit:
            raise InputError(f"env file {path} does not exist",
                             hint="create it from .env.example, or drop --env-file / ORCH_ENV_FILE")
        values, lines = _read_env_file(path) if path.is_file() else ({}, {})
        variables = cls(path, values, lines=lines)
        for name, value in {**variables.environ, **values}.items():
            if is_secret_name(name):
                register_secret(value)
        return variables

    def lookup(self, name: str) -> tuple[str | None, str]:
        """The value of `name` and a phrase saying where it came from."""
        if name in self.from_file:
            return self.from_file[name], f"{name} in {self.env_file}"
        if name in self.environ:
            return self.environ[name], f"{name} in the environment"
        return None, f"{name} (not set)"

    def first(self, *names: str) -> tuple[str | None, str | None]:
        """The first of `names` that is set (and not empty), with its origin."""
        for name in names:
            value, origin = self.lookup(name)
            if value:
                return value, origin
        return None, None

    def where_to_set(self, name: str) -> str:
        return f"add {name}=... to {self.env_file} (see .env.example) or export it"

    def interpolate(self, text: str, where: str) -> tuple[str, list[str]]:
        """Expand references in `text`; return the value and the origins of the variables used."""
        origins: list[str] = []

        def expand(m: re.Match) -> str:
            name, default = m.group(1), m.group(2)
            value, origin = self.lookup(name)
            if value is None or (value == "" and default is not None):
                if default is None:
                    raise MissingVariable(
                        f"{where} uses ${{{name}}}, which is not set in {self.env_file}"
                        f"{'' if self.env_file.is_file() else ' (no such file)'} or the environment",
                        hint=self.where_to_set(name))
                origins.append(f"default of ${{{name}:-...}}")
                return default
            origins.append(origin)
            return value

        return REFERENCE.sub(expand, text), origins


def _read_env_file(path: Path) -> tuple[dict[str, str], dict[str, int]]:
    """NAME=value lines; a line python-dotenv cannot parse, or a name defined twice, is an error naming the
    file and the line(s)."""
    import io

    from dotenv.parser import parse_stream

    text = read_config_text(path, "env file")
    values: dict[str, str] = {}
    lines: dict[str, int] = {}
    for binding in parse_stream(io.StringIO(text)):
        line = binding.original.line
        if binding.error:
            start = binding.original.string.strip().split("=")[0][:40]
            raise InputError(f"{path}:{line}: cannot parse the line starting {start!r}",
                             hint="write NAME=value (quote values with spaces or #)")
        if not binding.key:
            continue
        if binding.key in lines:
            raise InputError(f"{path}:{line}: {binding.key} is defined twice (lines {lines[binding.key]} and {line})",
                             hint="keep one of them: orch never picks one of two values silently")
        values[binding.key] = binding.value or ""
        lines[binding.key] = line
    return values, lines
