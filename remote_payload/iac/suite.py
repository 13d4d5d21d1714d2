"""Validate model answers (or files on disk) and judge seed 001's gates: the one entry point of the package.

    evaluate_answers([{"prompt": ..., "kind": "terraform", "answer": "...```hcl ...```"}, ...]) -> report dict
    check_paths(["main.tf", "chart/"], kind=None) -> report dict

    python -m remote_payload.iac.suite --answers answers.jsonl [--out report.json] [--venv DIR] [--json]
    python -m remote_payload.iac.suite --paths FILE_OR_DIR... [--kind K] [--json]

Exit status: 0 every gate passed, 1 a gate failed (or none could be judged), 2 bad input or no validators.
Runs wherever the validators venv is (controller or instance); it imports nothing from that venv.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Mapping

from ..errors import InputError, PayloadError
from .extract import Artifact, extract
from .gates import K8S_RENDERED, Gates
from .helm import RENDERED
from .kinds import KINDS, guess_kind, normalize_kind
from .registry import tool_versions, validators_for
from .report import build, format_text
from .terraform import TerraformValidate
from .toolchain import Toolchain, find_toolchain
from .verdict import Verdict, no_code


def _entries(items: Iterable[Mapping]) -> list[dict]:
    entries, problems = [], []
    for index, item in enumerate(items):
        where = f"answer {index + 1}"
        if not isinstance(item, Mapping):
            problems.append(f"{where}: expected an object with prompt, kind, answer")
            continue
        try:
            kind = normalize_kind(item.get("kind"))
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
            continue
        answer = item.get("answer")
        if not isinstance(answer, str):
            problems.append(f'{where}: "answer" must be a string')
            continue
        artifact = extract(answer, kind)
        entries.append({"id": str(item.get("id") or f"{index + 1:04d}"), "kind": kind, "prompt": str(item.get("prompt") or ""),
                        "artifact": artifact})
    if problems:
        raise InputError(f"{len(problems)} bad answer(s):\n" + "\n".join(f"  {p}" for p in problems[:50]))
    return entries


def _write(root: Path, entry: dict, index: int) -> Path:
    workdir = root / entry["kind"] / f"a{index:04d}"
    for name, text in (entry["artifact"].files if entry["artifact"] else {}).items():
        target = workdir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir


def _run_validator(validator, workdirs: list[Path], workers: int) -> list[Verdict]:
    if isinstance(validator, TerraformValidate) and workers > 1:   # one provider start per answer: in parallel
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(validator.check, workdirs))
    return validator.check_many(workdirs)


def _validate_kind(kind: str, group: list[dict], toolchain: Toolchain, workers: int, say) -> None:
    with_code = [e for e in group if e["artifact"]]
    for validator in validators_for(kind, toolchain):
        name = K8S_RENDERED if kind == "helm" and validator.name != "helm lint + template" else validator.name
        for entry in group:
            if not entry["artifact"]:
                entry["verdicts"][name] = no_code(name, kind)
        if name == K8S_RENDERED:
            rendered = [e for e in with_code if (e["workdir"] / RENDERED).is_dir()]
            for entry in with_code:
                if entry not in rendered:
                    entry["verdicts"][name] = Verdict(name, "unchecked", unchecked=["the chart did not render"])
            targets = rendered
        else:
            targets = with_code
        say(f"{kind}: {validator.name} on {len(targets)} answer(s)")
        dirs = [e["workdir"] / RENDERED if name == K8S_RENDERED else e["workdir"] for e in targets]
        for entry, verdict in zip(targets, _run_validator(validator, dirs, workers)):
            verdict.validator = name
            entry["verdicts"][name] = verdict


def evaluate_entries(entries: list[dict], *, toolchain: Toolchain | None = None, gates: Gates | None = None,
                     workers: int | None = None, say: Callable[[str], None] | None = None) -> dict:
    toolchain = toolchain or find_toolchain()
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    say = say or (lambda message: None)
    with tempfile.TemporaryDirectory(prefix="orch-iac-") as tmp:
        for index, entry in enumerate(entries):
            entry["workdir"], entry["verdicts"] = _write(Path(tmp), entry, index), {}
        for kind in KINDS:
            group = [e for e in entries if e["kind"] == kind]
            if group:
                _validate_kind(kind, group, toolchain, workers, say)
    answers = [{"id": e["id"], "kind": e["kind"], "prompt": e["prompt"],
                "origin": e["artifact"].origin if e["artifact"] else "no code found",
                "files": e["artifact"].files if e["artifact"] else {}, "verdicts": e["verdicts"]} for e in entries]
    versions = tool_versions(toolchain, {e["kind"] for e in entries})
    return build(answers, gates or Gates(), versions, f"{toolchain.terraform} ({toolchain.terraform_origin})")


def evaluate_answers(items: Iterable[Mapping], *, toolchain: Toolchain | None = None, gates: Gates | None = None,
                     workers: int | None = None, say: Callable[[str], None] | None = None) -> dict:
    """Validate each (prompt, kind, answer) and judge the gates; returns the report (remote_payload/iac/README.md)."""
    return evaluate_entries(_entries(items), toolchain=toolchain, gates=gates, workers=workers, say=say)


def _artifact_from_path(path: Path, kind: str | None) -> Artifact:
    if path.is_dir():
        files = {str(p.relative_to(path)): p.read_text() for p in sorted(path.rglob("*"))
                 if p.is_file() and not any(part.startswith(".") and part != ".helmignore" for part in p.relative_to(path).parts)}
        guessed = kind or ("helm" if (path / "Chart.yaml").is_file() else
                           next((k for name, text in files.items() if (k := guess_kind(name, text))), None))
    else:
        files = {path.name: path.read_text()}
        guessed = kind or guess_kind(path.name, files[path.name])
    if not guessed:
        raise InputError(f"cannot tell what kind of IaC {path} is",
                         hint=f"pass --kind (one of: {', '.join(KINDS)})")
    if not files:
        raise InputError(f"{path} holds no files")
    return Artifact(normalize_kind(guessed), files, f"path {path}")


def check_paths(paths: Iterable[str | Path], kind: str | None = None, **options) -> dict:
    """Validate files or folders on disk (a folder = one answer: a Terraform module, a chart, manifests)."""
    entries = []
    for index, raw in enumerate(paths):
        path = Path(raw)
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
        artifact = _artifact_from_path(path, normalize_kind(kind) if kind else None)
        entries.append({"id": str(path), "kind": artifact.kind, "prompt": "", "artifact": artifact})
    if not entries:
        raise InputError("no files to check")
    return evaluate_entries(entries, **options)


def _read_answers(path: Path) -> list[dict]:
    items = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                items.append(json.loads(line))
            except ValueError as exc:
                raise InputError(f"{path.name}:{number}: bad JSON: {exc}") from None
    return items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m remote_payload.iac.suite", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--answers", type=Path, help='JSONL, one {"prompt", "kind", "answer", "id"?} a line')
    source.add_argument("--paths", nargs="+", type=Path, help="files or folders to validate")
    parser.add_argument("--kind", help="the kind of every path (default: guessed from each)")
    parser.add_argument("--venv", type=Path, help="the validators venv (default: the cache, see toolchain.py)")
    parser.add_argument("--gates", help='JSON overrides, e.g. {"terraform_validate_min_pass_rate": 0.9}')
    parser.add_argument("--out", type=Path, help="also write the report JSON here")
    parser.add_argument("--json", action="store_true", help="print the report JSON on stdout")
    args = parser.parse_args(argv)
    say = lambda message: print(message, file=sys.stderr, flush=True)
    try:
        gates = Gates.from_json(json.loads(args.gates)) if args.gates else Gates()
        options = {"toolchain": find_toolchain(args.venv), "gates": gates, "say": say}
        doc = evaluate_answers(_read_answers(args.answers), **options) if args.answers else \
            check_paths(args.paths, args.kind, **options)
    except (ValueError, PayloadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.out:
        args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2) if args.json else format_text(doc))
    return 0 if doc["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
