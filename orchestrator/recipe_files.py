"""A job's recipe as the controller resolves it: a built-in name, or a YAML file on top of one.

    # recipes/qwen3-movielens.yaml (a job says `recipe: recipes/qwen3-movielens.yaml`, relative to the inventory)
    base: qwen3-0.6b-movielens        # a built-in recipe (`orch recipes`)
    learning_rate: 1.0e-4             # any recipe field; the same types and checks as the built-ins
    evaluation: {gate: 0.65}

Layers, later ones winning: the built-in recipe, the YAML file, the job's `overrides:` (and an `eval_gate:` set on
the job, which becomes `evaluation.gate`). Each layer is checked with the payload's own recipe code (stdlib
only), errors pointing at the file and line of the offending field. What travels to the instance is the base
name and the merged overrides in job.json -- the payload needs no YAML -- plus where each value came from.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import InputError
from .inventory import Job


@dataclass
class Layer:
    overrides: dict[str, Any]
    origin_of: dict[str, str]                 # dotted field as written -> "file:line (...)"
    default_origin: str
    where: Path | None = None                 # the YAML file, for errors


@dataclass
class ResolvedRecipe:
    base: str
    overrides: dict[str, Any]                 # merged; what job.json carries
    origins: dict[str, str]                   # every dotted field -> where its value came from
    source: str | None                        # the YAML file, when the job names one
    recipe: Any = field(repr=False, default=None)

    def job_source(self) -> dict[str, Any]:
        """job.json's "recipe_source": the YAML file and the origin of every value not built in."""
        built_in = f"built-in {self.base}"
        return {"file": self.source, "origins": {k: v for k, v in self.origins.items() if not v.startswith(built_in)}}


def is_recipe_file(recipe: str) -> bool:
    return recipe.endswith((".yaml", ".yml"))


def _lines(node, prefix: str, lines: dict[str, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = f"{prefix}.{key.value}" if prefix else str(key.value)
            lines[path] = key.start_mark.line + 1
            _lines(value, path, lines)


def read_recipe_file(path: Path) -> tuple[str, dict[str, Any], dict[str, int]]:
    """(base recipe name, the other fields, dotted key -> line) of a YAML recipe; InputError with file:line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"recipe file {path} cannot be read: {exc.strerror}",
                         hint="the path is relative to the inventory file") from None
    try:
        node, doc = yaml.compose(text, Loader=yaml.SafeLoader), yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise InputError(f"{path}:{mark.line + 1 if mark else 1}: malformed YAML: {exc.problem or exc}") from None
    if not isinstance(doc, dict):
        raise InputError(f"{path}:1: a recipe file is a mapping of recipe fields with `base: <built-in recipe>`")
    lines: dict[str, int] = {}
    _lines(node, "", lines)
    doc = dict(doc)
    base = doc.pop("base", None)
    if not isinstance(base, str):
        from remote_payload.recipes import available_recipes

        raise InputError(f"{path}:{lines.get('base', 1)}: `base:` must name a built-in recipe",
                         hint=f"built-in recipes: {', '.join(available_recipes())}")
    return base, doc, lines


def _error_line(exc, layer: Layer) -> str:
    """Where in a layer the field an error names was written."""
    name = getattr(exc, "field", None)
    for written, _ in _written_leaves(layer.overrides):
        parts = written.split(".")
        for end in range(len(parts), 0, -1):
            if parts[end - 1] == name:
                return _origin(layer, ".".join(parts[:end])).split(" ")[0]
    return layer.default_origin.split(" ")[0]


def _yaml_hint(exc, layer: Layer) -> str | None:
    field_name = getattr(exc, "field", None)
    for written, _ in _written_leaves(layer.overrides):
        value = _dotted(layer.overrides, written)
        if written.split(".")[-1] == field_name and isinstance(value, str) and _is_number(value):
            return f"YAML 1.1 reads {value} as text: write a number with a dot, e.g. {float(value):.1e}"
    return exc.hint


def _dotted(doc: dict, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return None
        doc = doc[part]
    return doc


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_layers(base: str, base_origin: str, layers: list[Layer]):
    """Apply the layers one by one, so an error names the layer (file:line) that caused it."""
    from remote_payload.errors import PayloadError
    from remote_payload.recipes import apply_overrides, builtin_recipe

    try:
        recipe = builtin_recipe(base)
    except PayloadError as exc:
        raise InputError(f"{base_origin.split(' ')[0]}: {exc.message}", hint=exc.hint) from None
    for layer in layers:
        try:
            recipe = apply_overrides(recipe, layer.overrides)
        except PayloadError as exc:
            raise InputError(f"{_error_line(exc, layer)}: {exc.message}", hint=_yaml_hint(exc, layer)) from None
    return recipe


def _written_leaves(overrides: dict[str, Any]) -> list[tuple[str, str]]:
    """(path as written, recipe field it sets) for every value of a layer; legacy names map under evaluation."""
    from remote_payload.recipes import LEGACY_EVAL_KEYS

    out = []
    for key, value in overrides.items():
        target = f"evaluation.{LEGACY_EVAL_KEYS[key]}" if key in LEGACY_EVAL_KEYS else key
        if not (isinstance(value, dict) and (key == "evaluation" or key in LEGACY_EVAL_KEYS)):
            out.append((key, target))
            continue
        for sub, sub_value in value.items():
            if isinstance(sub_value, dict):          # a preset, merged field by field
                out += [(f"{key}.{sub}.{leaf}", f"{target}.{sub}.{leaf}") for leaf in sub_value]
            else:                                    # evaluation: {gate: 2}, eval_terse: {max_new_tokens: 5}
                out.append((f"{key}.{sub}", f"{target}.{sub}"))
    return out


def _origin(layer: Layer, written: str) -> str:
    parts = written.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in layer.origin_of:
            return layer.origin_of[".".join(parts[:end])]
    return layer.default_origin


def _job_layer(job: Job) -> Layer:
    overrides = dict(job.overrides)
    origin_of = {k: job.origins.get(f"overrides.{k}", f"job {job.name} (jobs.{job.name}.overrides.{k})")
                 for k in overrides}
    if "eval_gate" in job.origins and "evaluation" not in overrides and "eval_gate" not in overrides:
        overrides["eval_gate"] = job.eval_gate          # the job's gate is an override of the recipe's
        origin_of["eval_gate"] = job.origins["eval_gate"]
    return Layer(overrides, origin_of, f"job {job.name} (jobs.{job.name}.overrides)")


def shown_path(path: Path) -> str:
    """A path as people read it: relative to where orch runs (the project folder) when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _yaml_layer(path: Path, fields: dict[str, Any], lines: dict[str, int]) -> Layer:
    shown = shown_path(path)
    origin_of = {k: f"{shown}:{line}" for k, line in lines.items() if k != "base"}
    return Layer(fields, origin_of, f"{shown}:{lines.get('base', 1)}", path)


def _origins(base: str, recipe, layers: list[Layer]) -> dict[str, str]:
    from remote_payload.recipes import flatten, recipe_module_path

    module = Path(recipe_module_path(base)).name
    origins = {k: f"built-in {base} (remote_payload/recipes/{module})" for k in flatten(recipe)}
    for layer in layers:
        if "task" in layer.overrides:  # a new task starts from that task's evaluation defaults
            for name in [n for n in origins if n.startswith("evaluation.")]:
                origins[name] = f"default of task {recipe.task}"
        for written, target in _written_leaves(layer.overrides):
            for name in origins:
                if name == target or name.startswith(f"{target}."):
                    origins[name] = _origin(layer, written)
    return origins


def resolve_job_recipe(job: Job) -> ResolvedRecipe:
    """The job's recipe, resolved and checked; InputError naming file:line for anything wrong."""
    from remote_payload.recipes import load_recipe, merge_overrides

    layers, source = [], None
    base, base_origin = job.recipe, job.origins.get("recipe", f"job {job.name}")
    if is_recipe_file(job.recipe):
        path = Path(job.recipe)
        base, fields, lines = read_recipe_file(path)
        layers.append(_yaml_layer(path, fields, lines))
        source, base_origin = shown_path(path), layers[0].default_origin
    layers.append(_job_layer(job))
    _check_layers(base, base_origin, layers)
    merged = merge_overrides(*(layer.overrides for layer in layers))
    recipe = load_recipe(base, merged)
    return ResolvedRecipe(base, merged if source or job.origins.get("eval_gate") else dict(job.overrides),
                          _origins(base, recipe, layers), source, recipe)


def recipe_doc(resolved: ResolvedRecipe) -> dict[str, Any]:
    """What `orch show --json` prints under "recipe"."""
    from remote_payload.recipes import flatten

    values = flatten(resolved.recipe)
    return {"name": resolved.recipe.name, "base": resolved.base, "source": resolved.source,
            "task": resolved.recipe.task, "overrides": resolved.overrides,
            "fields": {k: {"value": _jsonable(v), "from": resolved.origins.get(k, "")} for k, v in values.items()}}


def show_recipe(doc: dict[str, Any]) -> None:
    """The recipe table of `orch show`: every field, its value, where it came from."""
    from .output import table

    title = f"recipe {doc['name']} (task {doc['task']}" + (f", from {doc['source']})" if doc["source"] else ")")
    table(title, ["field", "value", "from"], [(k, v["value"], v["from"]) for k, v in doc["fields"].items()])


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
