"""What a deploy ships: the payload code, and a job's inputs -- two content-addressed tar archives.

Both are deterministic tars (sorted names, zeroed owners and times), so the same inputs give the same bytes
and the same id (the content's sha256): an unchanged deploy sends nothing. Each archive carries its own file
list (`.files.json`: path -> sha256), which the instance checks before it trusts a folder.

The payload archive is built from an allowlist -- the package's own files, the same patterns pyproject.toml
installs (`PACKAGE_FILES`) -- so a stray `.env` or key dropped into `remote_payload/` never travels.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError
from .inventory import Job

PAYLOAD_DIR = Path(__file__).resolve().parent.parent / "remote_payload"
# Non-Python files of the package (the same globs as [tool.setuptools.package-data] in pyproject.toml; a test
# checks they agree). Python files travel when they sit in a package folder (one with an __init__.py).
PACKAGE_FILES = ("requirements*.txt", "*.md", "data/*.jsonl", "data/*.txt", "iac/*.txt", "iac/*.md", "iac/tools/*.py")
FILE_LIST = ".files.json"


@dataclass(frozen=True)
class Archive:
    id: str                     # sha256[:16] of the tar bytes
    data: bytes
    files: int

    @property
    def size(self) -> int:
        return len(self.data)


def payload_source(name: str) -> bytes:
    """A file of remote_payload/ (the source tree's, or the installed package's)."""
    here = PAYLOAD_DIR / name
    if here.is_file():
        return here.read_bytes()
    from importlib.resources import files

    return (files("remote_payload") / name).read_bytes()


def requirements_hash(payload_dir: Path = PAYLOAD_DIR) -> str:
    return hashlib.sha256((payload_dir / "requirements.txt").read_bytes()).hexdigest()[:16]


def payload_files(payload_dir: Path = PAYLOAD_DIR) -> list[str]:
    """The package's own files, relative to `payload_dir`, sorted: what the payload archive holds."""
    found = set()
    for path in payload_dir.rglob("*.py"):
        rel = path.relative_to(payload_dir)
        if any(part.startswith((".", "__pycache__")) for part in rel.parts):
            continue
        if all((payload_dir / Path(*rel.parts[:i]) / "__init__.py").is_file() for i in range(len(rel.parts))):
            found.add(rel.as_posix())
    for pattern in PACKAGE_FILES:
        found |= {p.relative_to(payload_dir).as_posix() for p in payload_dir.glob(pattern) if p.is_file()}
    return sorted(found)


def _tar(files: dict[str, tuple[bytes, int]]) -> Archive:
    listing = {name: hashlib.sha256(data).hexdigest() for name, (data, _) in files.items()}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            data, mode = files[name]
            _add(tar, name, data, mode)
        _add(tar, FILE_LIST, json.dumps({"files": listing}, indent=1, sort_keys=True).encode())
    data = buf.getvalue()
    return Archive(hashlib.sha256(data).hexdigest()[:16], data, len(files))


@functools.lru_cache(maxsize=4)
def build_payload(payload_dir: Path = PAYLOAD_DIR) -> Archive:
    """The payload code: `remote_payload/<file>` for every allowlisted file."""
    files = {}
    for rel in payload_files(payload_dir):
        path = payload_dir / rel
        mode = 0o755 if path.stat().st_mode & 0o100 else 0o644
        files[f"remote_payload/{rel}"] = (path.read_bytes(), mode)
    return _tar(files)


def _require_file(job: Job, key: str) -> None:
    path = getattr(job, key)
    if path and not Path(path).is_file():
        raise InputError(f"job {job.name}: {key.replace('_', ' ')} {path} not found",
                         hint=f"fix jobs.{job.name}.{key} in the inventory (or the variable it uses)")


def check_job_inputs(job: Job) -> None:
    """Refuse a wrong recipe (YAML file:line), override or dataset line here, before the instance downloads 28 GB.

    The payload's own checks run (they are stdlib-only), so the controller and the instance agree."""
    from remote_payload.errors import PayloadError
    from remote_payload.inputs import check_inputs

    from .recipe_files import resolve_job_recipe

    _require_file(job, "dataset")
    _require_file(job, "eval_dataset")
    _require_file(job, "replay_dataset")
    recipe = resolve_job_recipe(job).recipe
    try:
        check_inputs(recipe, job.dataset, job.eval_dataset)
        if job.replay_dataset:   # the replayed rows must suit this job's recipe too
            check_inputs(recipe, job.replay_dataset, None)
    except PayloadError as exc:
        problems = getattr(exc, "problems", None) or []
        detail = "".join(f"\n    {p}" for p in problems[:20])
        more = f"\n    ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise InputError(f"job {job.name}: {exc.message}{detail}{more}",
                         hint=exc.hint or f"fix jobs.{job.name} in the inventory or the file it names") from None


def job_document(job: Job) -> tuple[dict, dict[str, bytes]]:
    """job.json for the instance (a YAML recipe resolved to its built-in base + overrides) and the files it names
    (their bytes). With `replay:` the dataset shipped is the mix (remote_payload/replay.py, seeded by the
    recipe's seed) and job.json "replay" says what was mixed in."""
    from .recipe_files import resolve_job_recipe

    _require_file(job, "dataset")
    _require_file(job, "eval_dataset")
    resolved = resolve_job_recipe(job)
    dataset = Path(job.dataset).read_bytes()
    doc = {"job": job.name, "recipe": resolved.base, "overrides": resolved.overrides,
           "dataset": f"data/{Path(job.dataset).name}"}
    if job.replay:
        from remote_payload.replay import mix

        _require_file(job, "replay_dataset")
        dataset, record = mix(dataset, Path(job.replay_dataset).read_bytes(), float(job.replay["fraction"]),
                              resolved.recipe.seed)
        doc["replay"] = {"job": job.replay["job"], "dataset": Path(job.replay_dataset).name,
                         "new_dataset": Path(job.dataset).name, **record}
    files = {doc["dataset"]: dataset}
    if job.eval_dataset:
        doc["eval_dataset"] = f"data/eval/{Path(job.eval_dataset).name}"
        files[doc["eval_dataset"]] = Path(job.eval_dataset).read_bytes()
    if resolved.source:
        doc["recipe_source"] = resolved.job_source()
    return doc, files


def build_job_inputs(job: Job) -> Archive:
    """The job's inputs: `job.json` and the datasets it names (checked by `check_job_inputs` before anything
    connects)."""
    job_doc, files = job_document(job)
    return _tar({"job.json": (json.dumps(job_doc, indent=2, sort_keys=True).encode(), 0o644),
                 **{name: (data, 0o644) for name, data in files.items()}})


def build_plan(plan: dict) -> Archive:
    """A run's plan (orchestrator/run_plan.py) as its own content-addressed folder: `plan.json`. Kept apart from
    the job's inputs, so that a new plan never ships the job's datasets again."""
    return _tar({"plan.json": (json.dumps(plan, indent=1, sort_keys=True).encode(), 0o644)})


def _add(tar: tarfile.TarFile, name: str, content: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(content), mode, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(content))
