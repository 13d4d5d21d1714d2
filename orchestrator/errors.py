"""Errors the controller raises. The CLI shows them once, with their hint, and exits with `exit_code`.

Each error says what is wrong and how to fix it, like `No key found - add one using ...`.
"""

from __future__ import annotations


class OrchError(Exception):
    """A failure the user can act on. Exit code 1: a check or job failed."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"

    def to_json(self) -> dict:
        return {"error": self.message, "hint": self.hint, "exit_code": self.exit_code,
                "kind": type(self).__name__}


class InputError(OrchError):
    """Bad input: usage, inventory, .env, recipe or dataset. Exit code 2."""

    exit_code = 2


class CheckFailed(OrchError):
    """A preflight check, a verification or a quality gate failed. Exit code 1."""


class RemoteError(OrchError):
    """The instance could not be reached or a command on it failed. Exit code 1."""
