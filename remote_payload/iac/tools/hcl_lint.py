"""orch-hcl-lint: tflint's core Terraform rules over a real HCL parser; runs ONLY with the validators venv's python.

    <validators venv>/bin/python hcl_lint.py < {"dirs": [DIR, ...]}

Parses every .tf file of each folder (one Terraform module) with bc-python-hcl2 (checkov's maintained HCL2
parser, pinned by checkov) and applies, with tflint's rule names and severities:
  terraform_required_version      warning  no `terraform { required_version = ... }`
  terraform_required_providers    warning  a provider used without a required_providers entry with a version
  terraform_typed_variables       warning  a variable without `type`
  terraform_unused_declarations   warning  a variable, local or data source nobody references
  terraform_module_pinned_source  warning  a git/hg module source without a ref
and orch's structure rules (errors: they break the configuration, and the only structure check GCP/Azure
configs get offline, where `terraform validate` cannot run):
  hcl_syntax                      error    the file does not parse
  orch_undeclared_reference       error    var./local./data./module./resource reference to nothing declared
  orch_duplicate_declaration      error    two blocks with the same type and name
Prints {"parser": version, "dirs": [{"dir", "findings": [{"rule", "severity", "message", "file", "line"}]}]}.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import hcl2

BUILTIN_ROOTS = {"var", "local", "data", "module", "each", "count", "path", "self", "terraform"}
REF = re.compile(r"(?<![\w.\-\"])(var|local|module)\.([A-Za-z_][\w-]*)|(?<![\w.\-\"])data\.([A-Za-z][\w-]*)\.([A-Za-z_][\w-]*)"
                 r"|(?<![\w.\-\"])([a-z][a-z0-9]*_[a-z0-9_]+)\.([A-Za-z_][\w-]*)")
FOR_BINDING = re.compile(r"\bfor\s+([A-Za-z_]\w*)(?:\s*,\s*([A-Za-z_]\w*))?\s+in\b")


def interpolations(text: str) -> list[str]:
    """The expression parts of a python-hcl2 string ("${...}"), with nested braces balanced."""
    parts, i = [], 0
    while (start := text.find("${", i)) >= 0:
        depth, j = 1, start + 2
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        parts.append(text[start + 2:j - 1])
        i = j
    return parts


def strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            if not str(key).startswith("__"):
                yield from strings(key)
                yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def dynamic_names(value, found: set[str]) -> set[str]:
    """Iterator names of dynamic blocks (`dynamic "ingress_rule" {...}`), which look like resource refs."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "dynamic" and isinstance(item, list):
                for block in item:
                    for name, body in block.items():
                        found.add(name)
                        found.update(s.strip("${}") for s in strings((body or {}).get("iterator", [])))
            dynamic_names(item, found)
    elif isinstance(value, list):
        for item in value:
            dynamic_names(item, found)
    return found


class Module:
    """Declarations and references of one folder of .tf files."""

    def __init__(self):
        self.decl: dict[tuple, tuple[str, int]] = {}     # ("var", name) -> (file, line)
        self.refs: list[tuple[tuple, str, int]] = []      # (("var", name), file, line)
        self.findings: list[dict] = []
        self.required_version = False
        self.required: dict[str, bool] = {}               # provider local name -> has a version
        self.providers_used: dict[str, tuple[str, int]] = {}
        self.bound: set[str] = set()

    def add(self, rule, severity, message, file, line=None):
        self.findings.append({"rule": rule, "severity": severity, "message": message, "file": file, "line": line})

    def declare(self, key, file, line):
        if key in self.decl and key[0] not in ("provider",):
            first = self.decl[key]
            self.add("orch_duplicate_declaration", "error", f"{'.'.join(key[1:])} is declared twice "
                     f"(first at {first[0]}:{first[1]})", file, line)
        self.decl.setdefault(key, (file, line))


def block_items(doc: dict, name: str):
    for entry in doc.get(name, []):
        yield from entry.items()


def read_file(module: Module, path: Path, rel: str) -> None:
    try:
        doc = hcl2.loads(path.read_text())
    except Exception as exc:
        line = getattr(exc, "line", None)
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        module.add("hcl_syntax", "error", f"does not parse: {message}", rel, line if isinstance(line, int) else None)
        return
    for block in doc.get("terraform", []):
        module.required_version |= "required_version" in block
        for providers in block.get("required_providers", []):
            for name, spec in providers.items():
                if not name.startswith("__"):
                    spec = spec[0] if isinstance(spec, list) and spec else spec
                    module.required[name] = isinstance(spec, dict) and "version" in spec or isinstance(spec, str)
    for name, body in block_items(doc, "variable"):
        module.declare(("var", name), rel, body.get("__start_line__"))
        if "type" not in body:
            module.add("terraform_typed_variables", "warning", f'variable "{name}" has no type', rel,
                       body.get("__start_line__"))
    for block in doc.get("locals", []):
        for name in block:
            if not name.startswith("__"):
                module.declare(("local", name), rel, block.get("__start_line__"))
    for kind in ("resource", "data"):
        for rtype, named in block_items(doc, kind):
            for name, body in named.items():
                line = body.get("__start_line__")
                module.declare((kind if kind == "data" else "resource", rtype, name), rel, line)
                provider = body.get("provider")
                local = (provider[0] if isinstance(provider, list) else provider or rtype).strip("${}").split(".")[0]
                module.providers_used.setdefault(local if provider else rtype.split("_")[0], (rel, line))
    for name, body in block_items(doc, "module"):
        module.declare(("module", name), rel, body.get("__start_line__"))
        source = "".join(strings(body.get("source", [])))
        if re.match(r"(git::|hg::|git@|https://github\.com/)", source) and "ref=" not in source:
            module.add("terraform_module_pinned_source", "warning", f'module "{name}" source is not pinned to a ref',
                       rel, body.get("__start_line__"))
    for name, body in block_items(doc, "provider"):
        module.providers_used.setdefault(name, (rel, body.get("__start_line__")))
    for name, body in block_items(doc, "output"):
        module.declare(("output", name), rel, body.get("__start_line__"))
    collect_refs(module, doc, rel)


def strings_with_lines(value, line=None):
    """(string, line of the innermost block holding it) for every string in a parsed document."""
    if isinstance(value, dict):
        line = value.get("__start_line__", line)
        for key, item in value.items():
            if not str(key).startswith("__"):
                yield from strings_with_lines(item, line)
    elif isinstance(value, list):
        for item in value:
            yield from strings_with_lines(item, line)
    elif isinstance(value, str):
        yield value, line


def collect_refs(module: Module, doc: dict, rel: str) -> None:
    skip = dynamic_names(doc, set())
    for value, line in strings_with_lines(doc):
        for expr in interpolations(value):
            bound = {n for pair in FOR_BINDING.findall(expr) for n in pair if n}
            for m in REF.finditer(expr):
                if m.group(1):
                    key = (m.group(1), m.group(2))
                elif m.group(3):
                    key = ("data", m.group(3), m.group(4))
                else:
                    if m.group(5) in skip or m.group(5) in bound or m.group(5) in BUILTIN_ROOTS:
                        continue
                    key = ("resource", m.group(5), m.group(6))
                module.refs.append((key, rel, line))


def finish(module: Module) -> None:
    if not module.required_version and (module.decl or module.providers_used):
        module.add("terraform_required_version", "warning", "no terraform { required_version } constraint", None)
    for local, (file, line) in sorted(module.providers_used.items()):
        if local == "terraform":   # terraform_data: built in, nothing to require
            continue
        if local not in module.required:
            module.add("terraform_required_providers", "warning",
                       f'provider "{local}" is used without a required_providers entry', file, line)
        elif not module.required[local]:
            module.add("terraform_required_providers", "warning",
                       f'provider "{local}" has no version constraint in required_providers', file, line)
    used = {key for key, _, _ in module.refs}
    for key, file, line in dict.fromkeys(module.refs):
        if key not in module.decl:
            shown = {"var": "var.", "local": "local.", "module": "module.", "data": "data."}.get(key[0], "")
            module.add("orch_undeclared_reference", "error",
                       f"reference to undeclared {shown}{'.'.join(key[1:])}", file, line)
    for key, (file, line) in module.decl.items():
        if key[0] in ("var", "local", "data") and key not in used:
            label = {"var": "variable", "local": "local", "data": "data source"}[key[0]]
            module.add("terraform_unused_declarations", "warning",
                       f"{label} {'.'.join(key[1:])} is declared but not used", file, line)


def lint_dir(directory: str) -> dict:
    root = Path(directory)
    module = Module()
    for path in sorted(root.rglob("*.tf")):
        rel = path.relative_to(root)
        if not any(part.startswith(".") for part in rel.parts) and len(rel.parts) == 1:
            read_file(module, path, str(rel))
    finish(module)
    return {"dir": directory, "findings": module.findings}


def main() -> int:
    request = json.load(sys.stdin)
    from importlib.metadata import version

    json.dump({"parser": f"bc-python-hcl2 {version('bc-python-hcl2')}",
               "dirs": [lint_dir(d) for d in request["dirs"]]}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
