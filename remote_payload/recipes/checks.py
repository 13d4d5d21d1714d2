"""Field checks shared by the recipe dataclasses: type conversion, range failures, unknown-field errors.

Every failure is a `RecipeError` that names the field (`err.field`), so a caller holding a YAML file can point at
the line the field was written on.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Iterable

from ..errors import RecipeError


def fail(owner: str, name: str, problem: str) -> typing.NoReturn:
    raise RecipeError(f"{owner}: field '{name}' {problem}", field=name)


def unknown_field(kind: str, key: str, known: Iterable[str]) -> RecipeError:
    known = sorted(known)
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"known fields: {', '.join(known)}"
    return RecipeError(f"unknown {kind} field '{key}'", hint=hint, field=key)


def type_name(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(type_name(h) for h in typing.get_args(hint) if h is not type(None))
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _convert(owner: str, name: str, hint: Any, value: Any) -> tuple[bool, Any]:
    """(accepted, value converted to the field's type: int->float, list->tuple)."""
    origin = typing.get_origin(hint)
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if hint is str:
        return isinstance(value, str), value
    if origin is tuple:
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
        return ok, tuple(value) if ok else value
    if origin is dict:
        ok = isinstance(value, dict) and all(isinstance(k, str) for k in value) and all(
            isinstance(v, (str, int, float, bool)) for v in value.values())
        return ok, dict(value) if ok else value
    if origin in (typing.Union, types.UnionType):  # a choice of section dataclasses (or None)
        return any(value is None if h is type(None) else isinstance(value, h) for h in typing.get_args(hint)), value
    if dataclasses.is_dataclass(hint):
        return isinstance(value, hint), value
    raise TypeError(f"{owner}: unsupported field type {hint!r} for '{name}'")  # pragma: no cover


def check_types(obj: Any, owner: str) -> None:
    """Type-check (and normalise) every field of a frozen dataclass instance in place."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        ok, converted = _convert(owner, f.name, hints[f.name], value)
        if not ok:
            fail(owner, f.name, f"must be {type_name(hints[f.name])}, got {type(value).__name__} {value!r}")
        object.__setattr__(obj, f.name, converted)


def check_positive(obj: Any, owner: str, names: Iterable[str]) -> None:
    for name in names:
        if getattr(obj, name) <= 0:
            fail(owner, name, f"must be > 0 (got {getattr(obj, name)})")


def check_choice(obj: Any, owner: str, name: str, choices: Iterable[str]) -> None:
    choices = tuple(choices)
    if getattr(obj, name) not in choices:
        fail(owner, name, f"must be one of {', '.join(choices)} (got {getattr(obj, name)!r})")
