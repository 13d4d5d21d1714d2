"""The botocore client the sync uses (one factory), the credentials it may read from stdin, and the fast body
reader for ranged GETs."""

from __future__ import annotations

import json
import sys

from .errors import InputProblem, SyncError


def read_stdin_credentials() -> dict:
    line = sys.stdin.readline()
    if not line.strip():
        raise InputProblem("--creds-stdin: no credentials on stdin",
                           hint='send one JSON line {"aws_access_key_id": ..., "aws_secret_access_key": ...}')
    try:
        doc = json.loads(line)
        creds = {"aws_access_key_id": str(doc["aws_access_key_id"]),
                 "aws_secret_access_key": str(doc["aws_secret_access_key"])}
    except (ValueError, KeyError, TypeError):
        raise InputProblem("--creds-stdin: stdin is not a JSON line with aws_access_key_id and "
                           "aws_secret_access_key") from None
    if doc.get("aws_session_token"):
        creds["aws_session_token"] = str(doc["aws_session_token"])
    return creds


def make_client(endpoint: str | None, region: str | None, creds: dict | None, concurrency: int):
    try:
        import botocore.session
        from botocore.config import Config
    except ImportError:
        raise SyncError(f"botocore is not installed for {sys.executable}",
                        hint="run `orch deploy` first (it creates the payload venv), or `pip install boto3`",
                        kind="environment") from None
    session = botocore.session.get_session()
    region = region or session.get_config_variable("region") or "us-east-1"
    config = Config(
        region_name=region,
        connect_timeout=5, read_timeout=60,
        retries={"mode": "standard", "max_attempts": 3},
        max_pool_connections=concurrency + 4,
        tcp_keepalive=True,
        user_agent_extra="orch-s3sync",
        s3={"addressing_style": "path"} if endpoint else {},
    )
    return session.create_client("s3", endpoint_url=endpoint or None, config=config, **(creds or {}))


def fast_reader(body):
    """The http.client response under botocore's StreamingBody, read with readinto: one copy from the
    socket into our buffer instead of three. Used for ranged part GETs (S3 sends no checksum for those);
    falls back to the public `read()` when the layout is not the one expected (bench/sync.py measures it)."""
    raw = getattr(body, "_raw_stream", None)
    fp = getattr(raw, "_fp", None)
    if fp is None or not hasattr(fp, "readinto") or getattr(raw, "_decoder", None) is not None \
            or not hasattr(raw, "release_conn"):
        return None
    if getattr(raw, "_has_decoded_content", False):
        return None
    return fp
