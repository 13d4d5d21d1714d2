"""A job's model `config.json` for the planner: from a file, the job's S3 prefix, or the instance's models dir.

`load_model_config(job, instance, s3, path=None)` tries, in order: `--model-config FILE`; `<weights
prefix>config.json` read with the job's S3 settings (a few KB, through the one client factory, s3.py); the synced copy in the instance's models dir over the transport. Seed 000's bucket stored some JSON
gzip-compressed: a body starting with the gzip magic (1f 8b) is decompressed. Each failed source is
remembered, so the final error (and the plan) says where the config came from and what was tried.
"""

from __future__ import annotations

import gzip
import json
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError, OrchError

MAX_CONFIG_BYTES = 1 << 20      # a config.json is a few KB; anything bigger is not one
GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class ModelConfig:
    doc: dict[str, Any]
    source: str
    tried: list[str] = field(default_factory=list)   # sources that failed first, with why


def parse_config(data: bytes, where: str) -> dict[str, Any]:
    """The JSON object in `data` (gunzipped first when it is gzip data)."""
    if len(data) > MAX_CONFIG_BYTES:
        raise InputError(f"{where} is {len(data)} bytes: not a model config.json")
    if data[:2] == GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise InputError(f"{where} looks gzip-compressed but does not decompress: {exc}") from None
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{where} is not JSON: {exc}", hint="pass the model's config.json") from None
    if not isinstance(doc, dict):
        raise InputError(f"{where} must hold a JSON object")
    return doc


def from_file(path: str | Path) -> ModelConfig:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read --model-config {path}: {exc.strerror or exc}") from None
    return ModelConfig(parse_config(data, str(path)), str(path))


def from_s3(job, s3, attempts: int = 3) -> ModelConfig:
    """`<prefix>config.json` of the job's weights, with the controller's S3 settings (`Inventory.s3_settings`)."""
    from .weights import _listing_error, parse_s3_uri

    bucket, prefix = parse_s3_uri(job.weights)
    uri = f"s3://{bucket}/{prefix}config.json"
    try:
        client = s3.client(connect_timeout=3, read_timeout=10, attempts=attempts)
        body = client.get_object(Bucket=bucket, Key=prefix + "config.json")["Body"]
        data = body.read(MAX_CONFIG_BYTES + 1)
    except Exception as exc:  # noqa: BLE001 - turned into one clear error
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
        if code in ("NoSuchKey", "404"):
            raise InputError(f"no config.json under {job.weights}") from None
        raise _listing_error(exc, uri, s3) from None
    return ModelConfig(parse_config(data, uri), uri)


def from_instance(job, instance, transport=None) -> ModelConfig:
    """The synced copy on the instance: models_dir/<weights name>/config.json."""
    from .transport import connect
    from .weights import local_weights_path

    path = posixpath.join(local_weights_path(instance, job), "config.json")
    own = transport is None
    transport = transport or connect(instance)
    try:
        result = transport.run(["cat", "--", path], timeout=30, check=False)
    finally:
        if own:
            transport.close()
    if result.exit_code != 0:
        raise InputError(f"{instance.name}:{path}: {result.err_text.strip() or 'cannot be read'}")
    return ModelConfig(parse_config(result.stdout, f"{instance.name}:{path}"), f"{instance.name}:{path}")


def load_model_config(job, instance, s3, path: str | Path | None = None, transport=None) -> ModelConfig:
    """`transport`: an open connection to the instance, used (and left open) for its copy."""
    if path is not None:
        return from_file(path)
    tried = []
    for source in (lambda: from_s3(job, s3), lambda: from_instance(job, instance, transport)):
        try:
            found = source()
        except OrchError as exc:
            tried.append(exc.message)
            continue
        found.tried = tried
        return found
    raise InputError(f"no config.json for job {job.name}: " + "; ".join(tried),
                     hint="pass --model-config FILE (the model's config.json), or sync the weights first")
