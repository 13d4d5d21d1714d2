"""Errors the payload's command-line tools turn into one clear message and an exit status.

Exit statuses (ARCHITECTURE.md): 0 success, 1 a failed run or gate, 2 bad input (job, recipe, dataset).
"""

from __future__ import annotations


class PayloadError(Exception):
    """A failure with a message meant for the person running the job (no traceback needed)."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\nhint: {self.hint}"


class InputError(PayloadError):
    """The job, recipe or dataset given to the payload is wrong: exit status 2."""

    exit_code = 2


class JobError(InputError):
    """job.json is missing, unreadable or malformed."""


class RecipeError(InputError):
    """A recipe name, field or value is wrong; the message names the field, `field` holds its name (or None)."""

    def __init__(self, message: str, hint: str | None = None, field: str | None = None):
        super().__init__(message, hint)
        self.field = field


class DatasetError(InputError):
    """One or more dataset lines are bad; `problems` lists every one as 'file:line: reason'."""

    def __init__(self, message: str, problems: list[str] | None = None, hint: str | None = None):
        self.problems = list(problems or [])
        shown = self.problems[:50]
        more = len(self.problems) - len(shown)
        body = "\n".join(f"  {p}" for p in shown) + (f"\n  ... and {more} more" if more > 0 else "")
        super().__init__(f"{message}\n{body}" if shown else message, hint)


class ModelError(PayloadError):
    """The model or adapter cannot be loaded the way the recipe requires (e.g. not in 4-bit)."""


class TemplateError(PayloadError):
    """The tokenizer's chat template cannot render prompts the way training needs."""
