"""`orch fetch-adapter --upload s3://...`: archive a verified fetch to S3 (boto3's transfer manager, one object
per file, a manifest of the upload written last)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CheckFailed, InputError, OrchError
from .destination import Bar, list_files, sha256_of, verify_local
from .inspect import MANIFEST


@dataclass
class UploadResult:
    uri: str                          # s3://bucket/prefix/<job>/<run id>/
    files: list[str]
    bytes: int
    seconds: float
    endpoint: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"uri": self.uri, "files": self.files, "bytes": self.bytes,
                "seconds": round(self.seconds, 3), "endpoint": self.endpoint}

    def summary(self) -> str:
        return f"uploaded {len(self.files)} files ({_mb(self.bytes)}) to {self.uri} in {self.seconds:.1f} s"


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise InputError(f"--upload {uri!r} is not an S3 URI", hint="use s3://bucket/prefix/")
    bucket, _, prefix = uri[5:].partition("/")
    if not bucket or len(bucket) < 3 or len(bucket) > 63 or "/" in bucket or bucket != bucket.lower():
        raise InputError(f"--upload {uri!r}: {bucket!r} is not a valid bucket name",
                         hint="use s3://bucket/prefix/ with a lower-case bucket name")
    return bucket, prefix.strip("/")


def upload_adapter(dest_dir: Path, s3_uri: str, s3, *, progress: bool = False, client=None, sub: str = "adapter",
                   key: tuple[str, ...] | None = None) -> UploadResult:
    """Archive a verified fetch (`DEST/<job>/<run id>/`) under `s3_uri/<job>/<run id>/`; an export
    (`sub=""`, its files in `dest_dir` itself) under `s3_uri/` + the `key` parts (job, run id, exports, label).

    Every file is re-checked against the adapter manifest first. One object per file (boto3's transfer
    manager: multipart and parallel for big files); then `upload-manifest.json` (path, size, sha256 of
    every object) is written last, so a reader who finds it knows the rest is complete.
    `s3`: the job's S3Settings (endpoint, region, credentials from .env / the environment), or a ready `client`.
    """
    from boto3.s3.transfer import TransferConfig
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    started = time.monotonic()
    folder = Path(dest_dir)
    bucket, prefix = parse_s3_uri(s3_uri)
    entries = verify_local(folder, sub)
    key = key or (folder.parent.name, folder.name)
    job, run_id = key[0], key[1]
    base = "/".join(p for p in (prefix, *key) if p) + "/"
    uri = f"s3://{bucket}/{base}"

    member = (lambda rel: f"{sub}/{rel}") if sub else (lambda rel: rel)
    sums = {member(e.path): e.sha256 for e in entries}
    listed = [f for f in list_files(folder) if not f.startswith("exports/")] if sub else \
        [member(e.path) for e in entries]          # exports are uploaded on their own (`--export`)
    files = [f for f in listed if f != member(MANIFEST)] + [member(MANIFEST)]
    listing = []
    for rel in files:
        path = folder / rel
        listing.append({"path": rel, "size": path.stat().st_size,
                        "sha256": sums.get(rel) or sha256_of(path)})

    endpoint = s3.endpoint
    if client is None:
        client = s3.client(connect_timeout=10, read_timeout=60, attempts=5)
    transfer = TransferConfig(multipart_threshold=64 << 20, multipart_chunksize=64 << 20, max_concurrency=4)
    at = f" at {endpoint}" if endpoint else ""

    def fail(exc: Exception) -> OrchError:
        if isinstance(exc, NoCredentialsError):
            return OrchError(f"no S3 credentials to upload to {uri}",
                             hint="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (in .env or the environment)")
        code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""
        if code in ("404", "NoSuchBucket"):
            return OrchError(f"bucket {bucket!r} does not exist{at}", hint=f"create it, or fix --upload {s3_uri}")
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return OrchError(f"S3 refused the upload to {uri}{at} ({code})",
                             hint="check the AWS credentials and that they may write to this bucket")
        return OrchError(f"upload to {uri}{at} failed: {exc}", hint="check --upload, the endpoint and the network; "
                                                                     "re-running uploads everything again")

    total = sum(item["size"] for item in listing)
    bar = Bar(progress, total, f"uploading to {uri}")
    try:
        client.head_bucket(Bucket=bucket)
        with bar:
            for item in listing:
                client.upload_file(str(folder / item["path"]), bucket, base + item["path"],
                                   ExtraArgs={"Metadata": {"sha256": item["sha256"]}}, Config=transfer,
                                   Callback=bar.advance)
        body = json.dumps({"job": job, "run_id": run_id, "files": listing}, indent=2).encode()
        client.put_object(Bucket=bucket, Key=base + "upload-manifest.json", Body=body,
                          ContentType="application/json")
        stored = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base):
            for obj in page.get("Contents", []):
                stored[obj["Key"][len(base):]] = obj["Size"]
    except (ClientError, BotoCoreError) as exc:
        raise fail(exc) from None
    except Exception as exc:  # boto3's S3UploadFailedError wraps the ClientError in text only
        if type(exc).__name__ == "S3UploadFailedError":
            raise OrchError(f"upload to {uri}{at} failed: {exc}",
                            hint="check the credentials and the bucket; re-running uploads again") from None
        raise
    wrong = [i["path"] for i in listing if stored.get(i["path"]) != i["size"]]
    if wrong:
        raise CheckFailed(f"after the upload to {uri}, these objects are missing or of the wrong size: "
                          + ", ".join(wrong), hint="run the upload again")
    return UploadResult(uri, [i["path"] for i in listing] + ["upload-manifest.json"], total,
                        time.monotonic() - started, endpoint)
