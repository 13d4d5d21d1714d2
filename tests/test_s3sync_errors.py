"""Every way a weights sync can fail ends with one clear message and exit status 1 (runtime) or 2 (bad input),
and leaves the destination in a state the next run can use."""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import subprocess
import time

import pytest

from tests.fixtures.s3server import (REPO, run_s3sync, s3sync_argv, s3sync_env, tree, unique_bucket,
                                     upload_weights)


def error_of(run) -> dict:
    doc = run.json()
    assert doc["ok"] is False
    assert doc["exit_code"] == run.code
    assert "Traceback" not in run.stderr
    return doc


# ------------------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("uri", ["https://bucket/models/", "s3://Not_A_Bucket/models/", "s3://ab/x/", "models/x"])
def test_a_source_that_is_not_an_s3_uri_is_bad_input(moto_server, tmp_path, uri):
    run = run_s3sync(moto_server, uri, tmp_path / "m", "--json")
    assert run.code == 2
    assert "s3://" in error_of(run)["error"] or "bucket name" in error_of(run)["error"]


def test_a_missing_bucket_is_bad_input_naming_the_bucket(moto_server, tmp_path):
    run = run_s3sync(moto_server, "s3://orch-no-such-bucket/models/x/", tmp_path / "m", "--json")
    assert run.code == 2
    doc = error_of(run)
    assert doc["kind"] == "no-bucket" and "orch-no-such-bucket" in doc["error"]


def test_an_empty_or_missing_prefix_is_bad_input_and_suggests_the_prefix_that_exists(
        moto_server, weights_set, tmp_path):
    ws = weights_set(prefix="models/tiny-qwen3/")
    run = run_s3sync(moto_server, f"s3://{ws.bucket}/models/tiny-qwen/", tmp_path / "m", "--json")
    assert run.code == 2
    doc = error_of(run)
    assert doc["kind"] == "empty-prefix" and "no objects under" in doc["error"]
    assert f"s3://{ws.bucket}/models/tiny-qwen3/" in doc["hint"]


def test_a_destination_that_is_a_file_is_bad_input(moto_server, weights_set, tmp_path):
    ws = weights_set()
    target = tmp_path / "not-a-dir"
    target.write_text("x")
    run = run_s3sync(moto_server, ws.uri, target, "--json")
    assert run.code == 2 and "not a directory" in error_of(run)["error"]


def test_a_destination_synced_from_another_source_is_refused_rather_than_mixed(moto_server, weights_set, tmp_path):
    first, second = weights_set(), weights_set()
    dest = tmp_path / "m"
    assert run_s3sync(moto_server, first.uri, dest).code == 0
    run = run_s3sync(moto_server, second.uri, dest, "--json")
    assert run.code == 2
    doc = error_of(run)
    assert first.uri in doc["error"] and second.uri in doc["error"]


def test_a_key_that_would_escape_the_destination_is_refused(moto_server, tmp_path):
    client = moto_server.client()
    bucket = unique_bucket("escape")
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key="models/m/ok.json", Body=b"{}")
    client.put_object(Bucket=bucket, Key="models/m/../../evil.txt", Body=b"x")
    run = run_s3sync(moto_server, f"s3://{bucket}/models/m/", tmp_path / "d" / "m", "--json")
    assert run.code == 2 and "cannot be written safely" in error_of(run)["error"]
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "d" / "evil.txt").exists()


# ---------------------------------------------------------------------------------------- runtime

def test_access_denied_is_a_runtime_failure_that_names_the_permission_to_check(rclone_server, tmp_path):
    rclone_server.put_file("orch-denied", "models/m/config.json", b"{}")
    run = run_s3sync(rclone_server, "s3://orch-denied/models/m/", tmp_path / "m", "--json",
                     env={"AWS_SECRET_ACCESS_KEY": "not-the-secret"})
    assert run.code == 1
    doc = error_of(run)
    assert doc["kind"] == "access-denied" and "access denied" in doc["error"]
    assert "s3:GetObject" in doc["hint"]
    assert "not-the-secret" not in run.stdout + run.stderr


def test_an_unreachable_endpoint_fails_fast_with_a_clear_message(moto_server, tmp_path):
    from tests.fixtures.s3server import free_port

    closed = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    argv = s3sync_argv(moto_server, "s3://orch-any/models/m/", tmp_path / "m", "--json")
    argv[argv.index("--endpoint") + 1] = closed
    p = subprocess.run(argv, cwd=REPO, env=s3sync_env(moto_server), capture_output=True, text=True, timeout=60)
    assert time.monotonic() - start < 15
    assert p.returncode == 1
    doc = json.loads(p.stdout)
    assert doc["kind"] == "unreachable" and closed in doc["error"]


def test_no_credentials_anywhere_is_a_runtime_failure_pointing_at_role_or_forwarding(moto_server, tmp_path):
    run = run_s3sync(moto_server, "s3://orch-any/models/m/", tmp_path / "m", "--json",
                     drop_env=("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"))
    assert run.code == 1
    doc = error_of(run)
    assert doc["kind"] == "credentials" and "s3_credentials: forward" in doc["hint"]


def test_a_second_sync_into_the_same_folder_while_one_runs_is_refused(moto_server, weights_set, tmp_path):
    ws = weights_set()
    dest = tmp_path / "m"
    dest.mkdir()
    with open(dest / ".orch-weights.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        run = run_s3sync(moto_server, ws.uri, dest, "--json")
    assert run.code == 1 and error_of(run)["kind"] == "busy"


def corrupt_set(moto_server, tmp_path):
    files = {"config.json": b'{"ok": true}', "model.safetensors": os.urandom(1000).replace(b"\x1f\x8b", b"00")}
    bucket = unique_bucket("corrupt")
    upload_weights(moto_server.client(), bucket, "m/", files)
    return bucket, files


def test_a_gzipped_json_that_does_not_decompress_fails_naming_the_file(moto_server, tmp_path):
    bucket, files = corrupt_set(moto_server, tmp_path)
    moto_server.client().put_object(Bucket=bucket, Key="m/tokenizer.json",
                                    Body=gzip.compress(b'{"a": 1}' * 100)[:-20])   # truncated gzip
    dest = tmp_path / "m"
    run = run_s3sync(moto_server, f"s3://{bucket}/m/", dest, "--json")
    assert run.code == 1
    doc = error_of(run)
    assert doc["kind"] == "corrupt" and "tokenizer.json" in doc["error"] and "decompress" in doc["error"]
    assert not (dest / "tokenizer.json").exists()
    assert not list(dest.rglob("*.orch-*partial")) and not list(dest.rglob("*.orch-repair"))


def test_a_gzipped_json_that_is_not_json_once_decompressed_fails_naming_the_file(moto_server, tmp_path):
    bucket, files = corrupt_set(moto_server, tmp_path)
    moto_server.client().put_object(Bucket=bucket, Key="m/generation_config.json",
                                    Body=gzip.compress(b"this is not json"), ContentEncoding="gzip")
    run = run_s3sync(moto_server, f"s3://{bucket}/m/", tmp_path / "m", "--json")
    assert run.code == 1
    doc = error_of(run)
    assert "generation_config.json" in doc["error"] and "not valid JSON" in doc["error"]


def test_credentials_sent_on_stdin_are_used_and_never_written_or_printed(rclone_server, tmp_path):
    rclone_server.put_file("orch-creds", "models/m/config.json", b'{"a": 1}')
    dest = tmp_path / "m"
    creds = json.dumps({"aws_access_key_id": rclone_server.access_key,
                        "aws_secret_access_key": rclone_server.secret_key}) + "\n"
    run = run_s3sync(rclone_server, "s3://orch-creds/models/m/", dest, "--creds-stdin", "--json", input=creds,
                     drop_env=("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"))
    assert run.code == 0, run.stderr
    assert (dest / "config.json").read_bytes() == b'{"a": 1}'
    assert rclone_server.secret_key not in run.stdout + run.stderr
    for path in dest.rglob("*"):
        if path.is_file():
            assert rclone_server.secret_key.encode() not in path.read_bytes(), path


def test_creds_stdin_without_credentials_on_stdin_is_bad_input(moto_server, tmp_path):
    run = run_s3sync(moto_server, "s3://orch-any/m/", tmp_path / "m", "--creds-stdin", "--json", input="")
    assert run.code == 2 and "--creds-stdin" in error_of(run)["error"]


# ----------------------------------------------------------------------------------- a full disk

def small_disk_runner():
    """argv prefix that runs a command in a private mount namespace (root, or a user namespace)."""
    return (["unshare", "--mount", "--propagation", "private"] if os.geteuid() == 0
            else ["unshare", "--user", "--map-root-user", "--mount"])


SMALL_DISK_SCRIPT = r"""
mount -t tmpfs -o size="$1" orch-small-disk "$DEST" || exit 97
shift
"$@" > "$OUT/stdout" 2> "$OUT/stderr"
echo $? > "$OUT/rc"
(cd "$DEST" && find . -type f -printf '%P %s\n') > "$OUT/files"
cp "$DEST/.orch-weights.json" "$OUT/manifest.json" 2>/dev/null
for f in $(cd "$DEST" && find . -type f ! -name '.orch-*'); do mkdir -p "$OUT/tree/$(dirname "$f")"; cp "$DEST/$f" "$OUT/tree/$f"; done
exit 0
"""


def run_on_small_disk(server, ws, tmp_path, size: str, *args: str) -> dict:
    """The sync into a fresh tmpfs of `size`, mounted only inside a private mount namespace (it vanishes
    with the command, so what it held is copied out first)."""
    dest, out = tmp_path / "small-disk", tmp_path / "out"
    dest.mkdir()
    out.mkdir()
    argv = [*small_disk_runner(), "sh", "-c", SMALL_DISK_SCRIPT, "sh", size,
            *s3sync_argv(server, ws.uri, dest, *args)]
    p = subprocess.run(argv, cwd=REPO, env={**s3sync_env(server), "DEST": str(dest), "OUT": str(out)},
                       capture_output=True, text=True, timeout=120)
    if p.returncode != 0 or not (out / "rc").exists():
        pytest.fail(f"cannot mount a small tmpfs in a private namespace (needs root and util-linux's "
                    f"unshare): {p.stderr.strip()[-300:]}")
    files = dict(line.rsplit(" ", 1) for line in (out / "files").read_text().splitlines())
    return {"code": int((out / "rc").read_text()), "stdout": (out / "stdout").read_text(),
            "stderr": (out / "stderr").read_text(), "files": {k: int(v) for k, v in files.items()},
            "manifest": json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").exists() else None,
            "tree": tree(out / "tree") if (out / "tree").exists() else {}}


def test_a_disk_that_fills_up_mid_download_removes_the_partial_file_and_keeps_completed_files(
        moto_server, weights_set, tmp_path):
    ws = weights_set()
    result = run_on_small_disk(moto_server, ws, tmp_path, "12m", "--part-size", "4MiB", "--no-space-check", "--json")
    assert result["code"] == 1, result["stderr"]
    doc = json.loads(result["stdout"])
    assert doc["kind"] == "disk-full" and "disk full" in doc["error"] and "partial files removed" in doc["error"]
    assert not any(name.endswith(".orch-partial") for name in result["files"])
    small = {rel: data for rel, data in ws.files().items() if rel != ws.shard}
    assert result["tree"] == small                           # every completed file kept, intact
    assert set(result["manifest"]["files"]) == set(small)      # and recorded: the next run skips them
    assert result["manifest"]["partial"] == {}


def test_too_little_free_space_fails_before_downloading_anything(moto_server, weights_set, tmp_path):
    ws = weights_set()
    mark = moto_server.mark()
    result = run_on_small_disk(moto_server, ws, tmp_path, "12m", "--json")
    assert result["code"] == 1
    doc = json.loads(result["stdout"])
    assert doc["kind"] == "disk-full" and "not enough space" in doc["error"]
    assert "never /tmp" in doc["hint"]
    assert not any(r.is_object_read for r in moto_server.requests(since=mark, bucket=ws.bucket))
    assert result["tree"] == {}
