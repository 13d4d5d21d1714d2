"""Variables for the inventory: `.env` first, then the process environment; `${VAR}` and `${VAR:-default}`.

`.env` wins over the environment on purpose: the project's file is the authority for which box an
instance is, so a stale `export QWEN_GPU_INSTANCE_IP=...` in some shell cannot redirect a deploy.
Every value remembers where it came from, so errors can name the variable and the file to fix.
Secret values are registered for masking: they never reach output or logs.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError

REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|ACCESS_KEY|CREDENTIAL|PRIVATE", re.I)
MASK = "****"

_secrets: set[str] = set()


MIN_SECRET_LENGTH = 8  # shorter values are ordinary words ("demo", "test"): masking them garbles output


def register_secret(value: str | None) -> None:
    if value and len(value) >= MIN_SECRET_LENGTH:
        _secrets.add(value)


def mask(text: str) -> str:
    """Replace every registered secret value in `text`."""
    for value in sorted(_secrets, key=len, reverse=True):
        text = text.replace(value, MASK)
    return text


def is_secret_name(name: str) -> bool:
    return bool(SECRET_NAME.search(name)) and not name.endswith("_PATH")


class MissingVariable(InputError):
    """A `${NAME}` the inventory uses is set nowhere."""


@dataclass
class Variables:
    """Where `${NAME}` values come from: a `.env` file, then the environment."""

    env_file: Path
    from_file: dict[str, str] = field(default_factory=dict)
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))

    @classmethod
    def load(cls, env_file: str | Path | None, *, explicit: bool = False) -> "Variables":
        """Read `env_file`. A missing default `.env` is fine; a missing file the user named is an error."""
        path = Path(env_file) if env_file else Path(".env")
        if not path.is_file() and explicit:
            raise InputError(f"env file {path} does not exist",
                             hint="create it from .env.example, or drop --env-file / ORCH_ENV_FILE")
        values = _read_env_file(path) if path.is_file() else {}
        variables = cls(path, values)
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


def _read_env_file(path: Path) -> dict[str, str]:
    """NAME=value lines; a line python-dotenv cannot parse is an error naming the file and line."""
    from dotenv.parser import parse_stream

    values: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as stream:
            for binding in parse_stream(stream):
                if binding.error:
                    text = binding.original.string.strip().split("=")[0][:40]
                    raise InputError(f"{path}:{binding.original.line}: cannot parse the line starting {text!r}",
                                     hint="write NAME=value (quote values with spaces or #)")
                if binding.key:
                    values[binding.key] = binding.value or ""
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read env file {path}: {exc}") from exc
    return values
