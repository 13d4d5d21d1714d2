"""The code in a model's answer, by kind: fenced blocks first, sensible fallbacks when there are none.

    extract(answer, "terraform") -> Artifact(kind, files={"main.tf": "...", "variables.tf": "..."}, origin) | None

* Fenced blocks (``` or ~~~, any length; a block cut off by the end of the generation still counts) are
  matched by language tag (hcl/terraform/tf, yaml/yml, json, python, gotmpl/tpl) and, when the tag is missing
  or generic, by content. Shell, text and other blocks are ignored.
* A block's file name comes from its info string (```yaml title="templates/svc.yaml"```), a first-line
  comment (# main.tf), or the line just before it (**templates/deployment.yaml**, `values.yaml`:). A Helm chart
  is assembled from those names; unnamed blocks get Chart.yaml / values.yaml / templates/*.yaml by content.
* With no fence at all, the answer itself is used from its first line of code to its last (prose trimmed),
  split into files where a line names one (# templates/service.yaml).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .kinds import guess_kind, normalize_kind

LANGS = {
    "terraform": ("terraform", "hcl", "tf", "opentofu", "tofu", "hcl2"),
    "yaml": ("yaml", "yml"),
    "json": ("json",),
    "python": ("python", "py", "python3"),
    "template": ("gotmpl", "go-template", "tpl", "helm", "gotemplate", "go-tmpl"),
}
IGNORED = ("bash", "sh", "shell", "console", "zsh", "powershell", "ps1", "text", "txt", "plaintext", "diff",
           "output", "log", "ini", "toml", "dockerfile", "make", "makefile", "sql", "javascript", "js", "ts",
           "typescript", "go")
PATH = r"[\w][\w./-]*\.(?:tf|tfvars|ya?ml|json|tpl|py|txt)"
PATH_RE = re.compile(rf"(?<![\w/.-])({PATH}|\.helmignore)(?![\w-])")
STARTS = {
    "terraform": re.compile(r"^(terraform|provider|resource|data|variable|locals|module|output)\b"),
    "cloudformation": re.compile(r"^(AWSTemplateFormatVersion|Resources\s*:|Description\s*:|Parameters\s*:|---|\{)"),
    "kubernetes": re.compile(r"^(apiVersion\s*:|---|kind\s*:)"),
    "helm": re.compile(r"^(apiVersion\s*:|---|kind\s*:|\{\{)"),
    "pulumi": re.compile(r"^(import |from |\"\"\"|#!)"),
}
HELM_TOP = ("Chart.yaml", "values.yaml", "values.schema.json", ".helmignore", "Chart.lock")


@dataclass
class Block:
    lang: str           # "terraform" | "yaml" | "json" | "python" | "template" | "" (untagged) | "other"
    body: str
    name: str | None    # a file name the answer gives it
    closed: bool = True


@dataclass
class Artifact:
    kind: str
    files: dict[str, str] = field(default_factory=dict)
    origin: str = ""


def _lang(tag: str) -> str:
    tag = tag.lower()
    for lang, tags in LANGS.items():
        if tag in tags:
            return lang
    return "" if not tag else "other"


def _name_in(text: str) -> str | None:
    found = PATH_RE.search(text or "")
    return found.group(1).lstrip("./") if found else None


def blocks(answer: str) -> list[Block]:
    """Every fenced block, in order, with its language and the file name the answer gives it."""
    found, lines, i = [], answer.splitlines(), 0
    while i < len(lines):
        opening = re.match(r"^\s*(`{3,}|~{3,})\s*([^\s`{]*)\s*(.*)$", lines[i])
        if not opening:
            i += 1
            continue
        fence, tag, info = opening.groups()
        before = next((ln for ln in reversed(lines[max(0, i - 2):i]) if ln.strip()), "")
        body, j = [], i + 1
        while j < len(lines) and not re.match(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$", lines[j]):
            body.append(lines[j])
            j += 1
        text = "\n".join(body).strip("\n") + "\n"
        first = body[0] if body else ""
        name = _name_in(info) or (_name_in(first) if re.match(r"^\s*(#|//|\{\{/\*|/\*)", first) else None) \
            or _name_in(before)
        found.append(Block(_lang(tag.split(":")[0]), text, name or _name_in(tag), closed=j < len(lines)))
        i = j + 1
    return found


def _looks_like(block: Block, kind: str) -> bool:
    text = block.body
    if kind == "terraform":
        return block.lang == "terraform" or (block.lang == "" and bool(re.search(r'^\s*(resource|provider|terraform|module|variable|output|data|locals)\b[^\n]*\{', text, re.M)))
    if kind == "pulumi":
        return block.lang in ("python", "") and "pulumi" in text
    if block.lang not in ("yaml", "json", "", "template"):
        return False
    if kind == "cloudformation":
        return "AWSTemplateFormatVersion" in text or bool(re.search(r"Resources[\"']?\s*:", text) and "AWS::" in text)
    if kind == "kubernetes":
        return all(re.search(rf"(^|[{{,\s])[\"']?{key}[\"']?\s*:", text, re.M) for key in ("apiVersion", "kind"))
    return False


def _unique(files: dict[str, str], name: str, text: str) -> None:
    stem, dot, ext = name.rpartition(".")
    candidate, n = name, 2
    while candidate in files:
        candidate, n = f"{stem}_{n}{dot}{ext}" if dot else f"{name}_{n}", n + 1
    files[candidate] = text


def _helm_name(block: Block, index: int) -> str:
    if block.name:
        parts = block.name.split("/")
        if "templates" in parts:
            return "/".join(parts[parts.index("templates"):])
        return parts[-1]
    text = block.body
    if re.search(r"^apiVersion:\s*v[12]\s*$", text, re.M) and re.search(r"^version:", text, re.M) \
            and not re.search(r"^kind:", text, re.M):
        return "Chart.yaml"
    if "{{- define" in text or "{{ define" in text:
        return "templates/_helpers.tpl"
    if "{{" not in text and not re.search(r"^kind:", text, re.M):
        return "values.yaml"
    return f"templates/template-{index}.yaml"


def _helm(found: list[Block]) -> dict[str, str]:
    chosen = [b for b in found if b.lang in ("yaml", "template", "", "json")
              and (b.name or "{{" in b.body or re.search(r"^(apiVersion|replicaCount|image)\s*:", b.body, re.M))]
    files: dict[str, str] = {}
    for index, block in enumerate(chosen, start=1):
        _unique(files, _helm_name(block, index), block.body)
    return files if any(n == "Chart.yaml" or n.startswith("templates/") for n in files) else {}


SUFFIXES = {"terraform": (".tf",), "cloudformation": (".yaml", ".yml", ".json", ".template"),
            "kubernetes": (".yaml", ".yml", ".json"), "pulumi": (".py",)}


def _default_name(kind: str, index: int, block: Block) -> str:
    if block.name and block.name.endswith(SUFFIXES[kind]):
        return block.name.split("/")[-1]
    first = {"terraform": "main.tf", "cloudformation": "template.yaml", "kubernetes": "manifest.yaml",
             "pulumi": "__main__.py"}[kind]
    if block.lang == "json" and kind in ("cloudformation", "kubernetes"):
        first = first.replace(".yaml", ".json")
    if index == 1:
        return first
    stem, _, ext = first.rpartition(".")
    return f"{stem}-{index}.{ext}"


def _trim(kind: str, text: str) -> str:
    """An unfenced answer from its first line of code to its last."""
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if STARTS[kind].match(ln)), None)
    if start is None:
        return ""
    lines = lines[start:]
    if kind == "terraform":
        last = max((i for i, ln in enumerate(lines) if re.match(r"^\}\s*$", ln)), default=len(lines) - 1)
        lines = lines[:last + 1]
    elif kind in ("cloudformation", "kubernetes", "helm"):
        for i in range(1, len(lines)):
            if not lines[i - 1].strip() and re.match(r"^[A-Z][^:]*[.!?]\s*$", lines[i]):
                lines = lines[:i]
                break
    return "\n".join(lines).strip("\n") + "\n"


def _sections(text: str) -> list[Block]:
    """Unfenced multi-file answers: split where a line only names a file ("# templates/svc.yaml", "File: x")."""
    parts, name, body = [], None, []
    for line in text.splitlines():
        header = re.match(rf"^\s*(?:#+|//|\*\*|File:|Filename:)\s*`?({PATH}|\.helmignore)`?\s*(?:\*\*)?:?\s*$", line)
        if header:
            if body and any(ln.strip() for ln in body):
                parts.append(Block("", "\n".join(body).strip("\n") + "\n", name))
            name, body = header.group(1).lstrip("./"), []
        else:
            body.append(line)
    if body and any(ln.strip() for ln in body):
        parts.append(Block("", "\n".join(body).strip("\n") + "\n", name))
    return parts


def extract(answer: str, kind: str) -> Artifact | None:
    """The answer's code of this kind as files, or None when it holds none."""
    kind = normalize_kind(kind)
    found = blocks(answer)
    origin = f"{len(found)} fenced block(s)"
    if not found:
        found = [b for b in _sections(answer) if (b.name and guess_kind(b.name, b.body) == kind) or b.name is None]
        for block in found:
            block.body = _trim(kind, block.body) if block.name is None or kind != "helm" else block.body
        found = [b for b in found if b.body.strip()]
        origin = "unfenced answer"
    if kind == "helm":
        files = _helm(found)
        return Artifact(kind, files, origin) if files else None
    chosen = [b for b in found if _looks_like(b, kind)]
    if not chosen and kind in ("cloudformation", "kubernetes"):
        chosen = [b for b in found if b.lang in ("yaml", "json")]   # wrong content: let the validator say why
    files: dict[str, str] = {}
    for index, block in enumerate(chosen, start=1):
        _unique(files, _default_name(kind, index, block), block.body)
    return Artifact(kind, files, origin) if files else None
