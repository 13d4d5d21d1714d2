"""The bundle shipped to an instance: `remote_payload/`, the job's `job.json` and its datasets.

Built as a deterministic tar (sorted names, zeroed owners and times), so the same inputs give the same
bytes and the same id: the id is the content's sha256, and an unchanged deploy sends nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError
from .inventory import Job

PAYLOAD_DIR = Path(__file__).resolve().parent.parent / "remote_payload"
SKIP = {"__pycache__", ".pytest_cache"}


@dataclass
class Bundle:
    id: str                     # sha256[:16] of the tar bytes
    data: bytes
    requirements_hash: str      # names the venv on the instance
    dataset_name: str

    @property
    def size(self) -> int:
        return len(self.data)


def requirements_hash(payload_dir: Path = PAYLOAD_DIR) -> str:
    return hashlib.sha256((payload_dir / "requirements.txt").read_bytes()).hexdigest()[:16]


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
    recipe = resolve_job_recipe(job).recipe
    try:
        check_inputs(recipe, job.dataset, job.eval_dataset)
    except PayloadError as exc:
        problems = getattr(exc, "problems", None) or []
        detail = "".join(f"\n    {p}" for p in problems[:20])
        more = f"\n    ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise InputError(f"job {job.name}: {exc.message}{detail}{more}",
                         hint=exc.hint or f"fix jobs.{job.name} in the inventory or the file it names") from None


def job_document(job: Job) -> tuple[dict, dict[str, Path]]:
    """job.json for the instance (a YAML recipe resolved to its built-in base + overrides) and the files it names."""
    from .recipe_files import resolve_job_recipe

    _require_file(job, "dataset")
    _require_file(job, "eval_dataset")
    resolved = resolve_job_recipe(job)
    files = {f"data/{Path(job.dataset).name}": Path(job.dataset)}
    doc = {"job": job.name, "recipe": resolved.base, "overrides": resolved.overrides,
           "dataset": f"data/{Path(job.dataset).name}"}
    if job.eval_dataset:
        doc["eval_dataset"] = f"data/eval/{Path(job.eval_dataset).name}"
        files[doc["eval_dataset"]] = Path(job.eval_dataset)
    if resolved.source:
        doc["recipe_source"] = resolved.job_source()
    return doc, files


def build_bundle(job: Job, payload_dir: Path = PAYLOAD_DIR) -> Bundle:
    """The job's bundle. Its inputs were checked by `check_job_inputs` before anything connected."""
    job_doc, files = job_document(job)
    dataset_name = job_doc["dataset"]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(_payload_files(payload_dir)):
            _add(tar, f"remote_payload/{path.relative_to(payload_dir).as_posix()}", path.read_bytes(),
                 0o755 if path.suffix == ".py" and path.stat().st_mode & 0o100 else 0o644)
        _add(tar, "job.json", json.dumps(job_doc, indent=2, sort_keys=True).encode())
        for name, path in sorted(files.items()):
            _add(tar, name, path.read_bytes())
    data = buf.getvalue()
    return Bundle(hashlib.sha256(data).hexdigest()[:16], data, requirements_hash(payload_dir), dataset_name)


def _payload_files(root: Path):
    for path in root.rglob("*"):
        if path.is_file() and not SKIP.intersection(path.relative_to(root).parts) and path.suffix != ".pyc":
            yield path


def _add(tar: tarfile.TarFile, name: str, content: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(content), mode, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(content))
