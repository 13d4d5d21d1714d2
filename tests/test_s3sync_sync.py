"""remote_payload.s3sync against a real S3 server (moto) on 127.0.0.1: what lands on disk, and how little a
re-run costs. The bucket mirrors the user's: config.json gzipped with Content-Encoding: gzip,
tokenizer_config.json gzipped without it, a 20 MB shard fetched in ranged parts, nested keys, a zero-byte file."""

from __future__ import annotations

import gzip
import json
import os
import shutil

from tests.fixtures.s3server import (
    load_manifest,
    pseudo_random_bytes,
    run_s3sync,
    tree,
    unique_bucket,
)

PART = "8MiB"     # the 20 MB shard is fetched as three ranged GETs
N_SMALL = 120


def test_every_synced_file_is_byte_identical_to_its_original_and_gzipped_json_arrives_decompressed(
        moto_server, weights_set, tmp_path):
    ws = weights_set()
    dest = tmp_path / "models" / "tiny-qwen3"
    run = run_s3sync(moto_server, ws.uri, dest, "--part-size", PART, "--json")
    assert run.code == 0, run.stderr
    assert tree(dest) == ws.files()
    json.loads((dest / "config.json").read_text())            # plain UTF-8 JSON again
    json.loads((dest / "tokenizer_config.json").read_text())
    assert (dest / "nested" / "zero-byte.txt").stat().st_size == 0
    assert not list(dest.rglob("*.orch-partial"))
    summary = run.json()
    assert summary["ok"] and summary["files"] == len(ws.files())
    assert summary["bytes"] == ws.total_bytes and summary["downloaded_bytes"] == ws.total_bytes


def test_each_gzip_repair_is_reported_with_or_without_content_encoding(moto_server, weights_set, tmp_path):
    ws = weights_set()
    run = run_s3sync(moto_server, ws.uri, tmp_path / "m", "--json")
    assert run.code == 0, run.stderr
    repaired = {r["path"]: r for r in run.json()["repaired"]}
    assert set(repaired) == {"config.json", "tokenizer_config.json"}
    assert repaired["config.json"]["content_encoding"] == "gzip"        # stored with the header
    assert repaired["tokenizer_config.json"]["content_encoding"] is None  # gzip bytes, no header
    for path, info in repaired.items():
        assert info["stored_bytes"] == ws.stored[path]["size"]
        assert info["bytes"] == len(ws.files()[path])


def test_a_weights_file_that_starts_with_gzip_magic_is_never_modified_only_warned_about(
        moto_server, weights_set, tmp_path):
    ws = weights_set()
    dest = tmp_path / "m"
    run = run_s3sync(moto_server, ws.uri, dest, "--json")
    assert run.code == 0, run.stderr
    rel = "nested/looks-gzipped.safetensors"
    assert (dest / rel).read_bytes()[:2] == b"\x1f\x8b"
    assert (dest / rel).read_bytes() == ws.files()[rel]
    assert any(rel in w and "kept as stored" in w for w in run.json()["warnings"])


def test_the_synced_model_and_tokenizer_load_with_from_pretrained_from_the_local_path(
        moto_server, weights_set, tiny_model_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ws = weights_set()
    dest = tmp_path / "models" / "tiny-qwen3"
    # A small part size so that model.safetensors itself is assembled from ranged parts.
    run = run_s3sync(moto_server, ws.uri, dest, "--part-size", "256KiB", "--json")
    assert run.code == 0, run.stderr
    assert run.json()["requests"]["GetObject"] > len(ws.files())      # the safetensors came in parts
    synced = AutoModelForCausalLM.from_pretrained(str(dest))
    original = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    for (name, a), (_, b) in zip(sorted(synced.state_dict().items()), sorted(original.state_dict().items())):
        assert torch.equal(a, b), name
    tokenizer = AutoTokenizer.from_pretrained(str(dest))
    assert tokenizer("hello world")["input_ids"] == AutoTokenizer.from_pretrained(str(tiny_model_dir))(
        "hello world")["input_ids"]


def test_a_rerun_of_a_completed_sync_makes_one_listing_request_and_reads_no_object(
        moto_server, weights_set, tmp_path):
    ws = weights_set()
    dest = tmp_path / "m"
    assert run_s3sync(moto_server, ws.uri, dest, "--part-size", PART).code == 0
    mark = moto_server.mark()
    run = run_s3sync(moto_server, ws.uri, dest, "--part-size", PART, "--json")
    assert run.code == 0, run.stderr
    seen = moto_server.requests(since=mark, bucket=ws.bucket)          # what the server actually served
    assert [r.is_listing for r in seen] == [True], seen
    summary = run.json()
    assert summary["downloaded_files"] == 0 and summary["downloaded_bytes"] == 0
    assert summary["skipped_files"] == len(ws.files())
    assert summary["requests"] == {"ListObjectsV2": 1}
    assert tree(dest) == ws.files()


def test_the_manifest_beside_the_weights_records_key_size_etag_sha256_and_repairs(
        moto_server, weights_set, tmp_path):
    import hashlib

    ws = weights_set()
    dest = tmp_path / "m"
    assert run_s3sync(moto_server, ws.uri, dest, "--part-size", PART).code == 0
    manifest = load_manifest(dest)
    assert manifest["source"] == ws.uri
    files = manifest["files"]
    assert set(files) == set(ws.files())
    listing = moto_server.client().list_objects_v2(Bucket=ws.bucket, Prefix=ws.prefix)["Contents"]
    for item in listing:
        rel = item["Key"][len(ws.prefix):]
        assert files[rel]["key"] == item["Key"]
        assert files[rel]["size"] == item["Size"]
        assert files[rel]["etag"] == item["ETag"]
        assert files[rel]["sha256"] == hashlib.sha256(ws.files()[rel]).hexdigest()
        assert files[rel]["local_size"] == len(ws.files()[rel])
    assert files["config.json"]["repaired"] == "gzip"
    assert files["tokenizer_config.json"]["repaired"] == "gzip"
    assert files["model.safetensors"]["repaired"] is None
    assert manifest["partial"] == {}


def test_an_object_changed_on_s3_is_downloaded_again_and_nothing_else_is(moto_server, weights_set, tmp_path):
    ws = weights_set()
    dest = tmp_path / "m"
    assert run_s3sync(moto_server, ws.uri, dest, "--part-size", PART).code == 0
    new_config = json.dumps({"changed": True}).encode()
    moto_server.client().put_object(Bucket=ws.bucket, Key=ws.key("config.json"),
                                    Body=gzip.compress(new_config), ContentEncoding="gzip")
    mark = moto_server.mark()
    run = run_s3sync(moto_server, ws.uri, dest, "--part-size", PART, "--json")
    assert run.code == 0, run.stderr
    reads = [r.bucket_and_key[1] for r in moto_server.requests(since=mark, bucket=ws.bucket) if r.is_object_read]
    assert reads == [ws.key("config.json")]
    assert (dest / "config.json").read_bytes() == new_config
    assert [r["path"] for r in run.json()["repaired"]] == ["config.json"]


def test_a_local_file_damaged_after_the_sync_is_downloaded_again(moto_server, weights_set, tmp_path):
    ws = weights_set()
    dest = tmp_path / "m"
    assert run_s3sync(moto_server, ws.uri, dest, "--part-size", PART).code == 0
    with open(dest / ws.shard, "r+b") as f:
        f.truncate(1000)
    run = run_s3sync(moto_server, ws.uri, dest, "--part-size", PART, "--json")
    assert run.code == 0, run.stderr
    assert run.json()["downloaded_files"] == 1
    assert tree(dest) == ws.files()


def test_files_already_present_without_a_manifest_are_adopted_by_their_etag_not_downloaded(
        moto_server, weights_set, tmp_path):
    ws = weights_set()
    dest = tmp_path / "m"
    shutil.copytree(ws.expected, dest)          # e.g. copied there by hand or by `aws s3 sync`
    mark = moto_server.mark()
    run = run_s3sync(moto_server, ws.uri, dest, "--part-size", PART, "--json")
    assert run.code == 0, run.stderr
    reads = sorted(r.bucket_and_key[1][len(ws.prefix):] for r in moto_server.requests(since=mark, bucket=ws.bucket)
                   if r.is_object_read)
    # Only the two files stored gzipped differ from their local (decompressed) copies.
    assert reads == ["config.json", "tokenizer_config.json"]
    assert run.json()["skipped_files"] == len(ws.files()) - 2
    assert tree(dest) == ws.files()


def test_files_written_before_a_reboot_are_verified_and_only_a_damaged_one_is_fetched_again(
        moto_server, weights_set, tmp_path):
    ws = weights_set()
    dest = tmp_path / "m"
    assert run_s3sync(moto_server, ws.uri, dest, "--part-size", PART).code == 0
    # Pretend the files were written during an earlier boot that crashed before writeback: the shard
    # kept its size and mtime but its bytes on disk are not what was downloaded.
    manifest_path = dest / ".orch-weights.json"
    manifest = json.loads(manifest_path.read_text())
    for entry in manifest["files"].values():
        entry.update(boot="an-earlier-boot", durable=False)
    manifest_path.write_text(json.dumps(manifest))
    shard = dest / ws.shard
    st = shard.stat()
    with open(shard, "r+b") as f:
        f.seek(5_000_000)
        f.write(b"\x00" * 4096)
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))
    mark = moto_server.mark()
    run = run_s3sync(moto_server, ws.uri, dest, "--part-size", PART, "--json")
    assert run.code == 0, run.stderr
    reads = {r.bucket_and_key[1] for r in moto_server.requests(since=mark, bucket=ws.bucket) if r.is_object_read}
    assert reads == {ws.key(ws.shard)}
    assert tree(dest) == ws.files()
    after = load_manifest(dest)["files"]
    assert all(e["durable"] for rel, e in after.items() if rel != ws.shard)    # verified by sha256 / ETag
    assert after[ws.shard]["boot"] != "an-earlier-boot"                          # downloaded again now


def test_progress_json_streams_start_progress_file_repaired_and_done_events(moto_server, weights_set, tmp_path):
    ws = weights_set()
    run = run_s3sync(moto_server, ws.uri, tmp_path / "m", "--part-size", PART, "--progress-json")
    assert run.code == 0, run.stderr
    events = run.events()
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    start = events[0]
    assert start["files"] == len(ws.files()) and start["bytes"] == ws.total_bytes
    assert start["download_files"] == len(ws.files())
    files = [e for e in events if e["event"] == "file"]
    assert sorted(e["path"] for e in files) == sorted(ws.files())
    assert files[-1]["files_done"] == len(ws.files())
    assert {e["path"] for e in events if e["event"] == "repaired"} == {"config.json", "tokenizer_config.json"}
    assert events[-1]["ok"] is True


def test_a_dry_run_lists_and_plans_but_downloads_nothing(moto_server, weights_set, tmp_path):
    ws = weights_set()
    dest = tmp_path / "m"
    mark = moto_server.mark()
    run = run_s3sync(moto_server, ws.uri, dest, "--dry-run", "--json")
    assert run.code == 0, run.stderr
    summary = run.json()
    assert summary["to_download_files"] == len(ws.files()) and summary["to_download_bytes"] == ws.total_bytes
    assert not any(r.is_object_read for r in moto_server.requests(since=mark, bucket=ws.bucket))
    assert tree(dest) == {}


def test_a_prefix_without_trailing_slash_never_matches_a_sibling_prefix(moto_server, weights_set, tmp_path):
    ws = weights_set(prefix="models/tiny-qwen3/")
    moto_server.client().put_object(Bucket=ws.bucket, Key="models/tiny-qwen3-instruct/config.json", Body=b"{}")
    dest = tmp_path / "m"
    run = run_s3sync(moto_server, f"s3://{ws.bucket}/models/tiny-qwen3", dest, "--json")
    assert run.code == 0, run.stderr
    assert tree(dest) == ws.files()


def test_many_small_files_are_each_downloaded_and_renamed_into_place_exactly_once(moto_server, tmp_path):
    from tests.fixtures.s3server import unique_bucket

    client = moto_server.client()
    bucket = unique_bucket("many")
    client.create_bucket(Bucket=bucket)
    files = {f"shards/part-{i:03d}.json": json.dumps({"i": i, "pad": "x" * (i * 37)}).encode() for i in range(N_SMALL)}
    for rel, data in files.items():
        client.put_object(Bucket=bucket, Key="m/" + rel, Body=gzip.compress(data) if int(rel[-8:-5]) % 7 == 0 else data)
    dest = tmp_path / "m"
    run = run_s3sync(moto_server, f"s3://{bucket}/m/", dest, "--concurrency", "16", "--progress-json")
    assert run.code == 0, run.stderr
    done = [e["path"] for e in run.events() if e["event"] == "file"]
    assert sorted(done) == sorted(files)                       # one "file" event per file, no duplicates
    assert tree(dest) == files
    assert len([e for e in run.events() if e["event"] == "repaired"]) == len([i for i in range(N_SMALL) if i % 7 == 0])


def _upload_multipart(client, bucket: str, key: str, data: bytes, part_size: int) -> str:
    client.create_bucket(Bucket=bucket)
    upload = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts = []
    for n, start in enumerate(range(0, len(data), part_size), start=1):
        etag = client.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=n,
                                  Body=data[start:start + part_size])["ETag"]
        parts.append({"PartNumber": n, "ETag": etag})
    done = client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload,
                                            MultipartUpload={"Parts": parts})
    return done["ETag"]


def test_a_file_uploaded_in_parts_of_an_unusual_size_is_adopted_by_asking_s3_for_its_part_size(
        moto_server, tmp_path):
    bucket = unique_bucket("multipart")
    data = pseudo_random_bytes(13 * 1024 * 1024 + 17, seed=7)
    etag = _upload_multipart(moto_server.client(), bucket, "m/shard.bin", data, part_size=6 * 1024 * 1024 + 3)
    assert etag.strip('"').endswith("-3")
    dest = tmp_path / "m"
    dest.mkdir()
    (dest / "shard.bin").write_bytes(data)             # already there: copied by hand
    mark = moto_server.mark()
    run = run_s3sync(moto_server, f"s3://{bucket}/m/", dest, "--json")
    assert run.code == 0, run.stderr
    reads = [r for r in moto_server.requests(since=mark, bucket=bucket) if r.is_object_read]
    assert [(r.method, "partNumber=1" in r.path) for r in reads] == [("HEAD", True)]
    assert run.json()["skipped_files"] == 1 and run.json()["downloaded_bytes"] == 0


def test_a_local_file_whose_parts_do_not_match_the_multipart_etag_is_downloaded_again(moto_server, tmp_path):
    bucket = unique_bucket("multipart")
    data = pseudo_random_bytes(11 * 1024 * 1024, seed=8)
    _upload_multipart(moto_server.client(), bucket, "m/shard.bin", data, part_size=5 * 1024 * 1024)
    dest = tmp_path / "m"
    dest.mkdir()
    damaged = bytearray(data)
    damaged[7 * 1024 * 1024] ^= 0xFF                   # same size, one byte differs in the second part
    (dest / "shard.bin").write_bytes(bytes(damaged))
    run = run_s3sync(moto_server, f"s3://{bucket}/m/", dest, "--json")
    assert run.code == 0, run.stderr
    assert run.json()["downloaded_files"] == 1
    assert (dest / "shard.bin").read_bytes() == data
