"""`upload_adapter` (`orch fetch-adapter --upload s3://...`) against a real moto S3 server on 127.0.0.1."""

from __future__ import annotations

import json

import pytest

from orchestrator.errors import CheckFailed, InputError, OrchError
from orchestrator.fetch import upload_adapter
from orchestrator.s3 import S3Settings
from orchestrator.transport.local import LocalTransport
from tests.fixtures.s3server import moto_server, unique_bucket  # noqa: F401  (the session fixture)
from tests.test_fetch_local import corrupt, fetch, make_run, sha256


@pytest.fixture
def fetched(tmp_path):
    run_dir = make_run(tmp_path / "instance" / "runs" / "demo-20250101-000000")
    return fetch(LocalTransport("local"), run_dir, tmp_path / "adapters").dest


@pytest.fixture
def s3(moto_server, monkeypatch):  # noqa: F811
    for key, value in moto_server.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")   # the explicit endpoint must win
    return moto_server


def test_a_verified_adapter_is_uploaded_file_by_file_under_prefix_job_run_with_its_manifests_last(fetched, s3):
    bucket = unique_bucket("adapters")
    client = s3.client()
    client.create_bucket(Bucket=bucket)
    mark = s3.mark()
    result = upload_adapter(fetched, f"s3://{bucket}/nightly/", S3Settings(endpoint=s3.endpoint, region="us-east-1"))
    base = f"nightly/demo/{fetched.name}/"
    assert result.uri == f"s3://{bucket}/{base}"
    local = sorted(p.relative_to(fetched).as_posix() for p in fetched.rglob("*") if p.is_file())
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=base)["Contents"])
    assert keys == sorted(base + f for f in local + ["upload-manifest.json"])
    for rel in local:
        obj = client.get_object(Bucket=bucket, Key=base + rel)
        body = obj["Body"].read()
        assert body == (fetched / rel).read_bytes(), rel
        assert obj["Metadata"]["sha256"] == sha256(fetched / rel)
    listing = json.loads(client.get_object(Bucket=bucket, Key=base + "upload-manifest.json")["Body"].read())
    assert {f["path"]: f["sha256"] for f in listing["files"]} == {rel: sha256(fetched / rel) for rel in local}
    puts = [r.path for r in s3.requests(since=mark, bucket=bucket) if r.method == "PUT"]
    assert puts[-2].endswith("adapter/manifest.json") and puts[-1].endswith("upload-manifest.json")
    assert result.bytes == sum((fetched / rel).stat().st_size for rel in local)
    assert "uploaded" in result.summary() and result.to_json()["uri"] == result.uri


def test_uploading_to_a_bucket_that_does_not_exist_says_so(fetched, s3):
    with pytest.raises(OrchError, match=r"bucket 'orch-no-such-bucket' does not exist at http://127.0.0.1"):
        upload_adapter(fetched, "s3://orch-no-such-bucket/x/", S3Settings(endpoint=s3.endpoint))


def test_a_local_copy_that_no_longer_matches_its_manifest_is_not_uploaded(fetched, s3):
    bucket = unique_bucket("adapters")
    client = s3.client()
    client.create_bucket(Bucket=bucket)
    corrupt(fetched / "adapter" / "tokenizer.json")
    with pytest.raises(CheckFailed, match="no longer matches its manifest"):
        upload_adapter(fetched, f"s3://{bucket}/x/", S3Settings(endpoint=s3.endpoint))
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


@pytest.mark.parametrize("uri", ["https://bucket/x", "s3://", "s3://Bad_Bucket/x"])
def test_an_upload_target_that_is_not_an_s3_uri_is_bad_input(fetched, uri):
    with pytest.raises(InputError):
        upload_adapter(fetched, uri, S3Settings(endpoint="http://127.0.0.1:9"))
