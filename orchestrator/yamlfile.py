"""Reading a YAML file the user wrote: the document, and the line each key is on, so that every later error
can say `inventory.yaml:12`. A key written twice in one mapping is refused naming both lines (PyYAML would
silently keep the last one -- exactly how a job ends up on the wrong box)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import InputError
from .settings import read_config_text


def read_yaml(path: Path, what: str = "inventory") -> tuple[Any, dict[str, int]]:
    """(document, {"instances.qwen-g5.host": line, ...}); every problem is an InputError naming path:line."""
    text = read_config_text(path, what)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        lines: dict[str, int] = {}
        _record_lines(path, node, "", lines)
        doc = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise InputError(f"{path}{line}: malformed YAML: {exc.problem or exc}",
                         hint="fix the indentation or quoting on that line") from None
    except yaml.YAMLError as exc:   # e.g. a control character the reader refuses
        raise InputError(f"{path}: not a YAML file orch can read: {exc}") from None
    return doc, lines


def _record_lines(path: Path, node, prefix: str, lines: dict[str, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            name = str(key.value)
            line = key.start_mark.line + 1
            full = f"{prefix}.{name}" if prefix else name
            if name in seen:
                raise InputError(f"{path}:{line}: {name!r} is defined twice in {prefix or 'the top level'} "
                                 f"(lines {seen[name]} and {line})",
                                 hint="keep one of them: orch never picks one of two definitions silently")
            seen[name] = line
            lines[full] = line
            _record_lines(path, value, full, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _record_lines(path, item, f"{prefix}[{index}]", lines)
