"""An interrupted sync never leaves a truncated file under a real name, and the next run fetches only what
was missing: killed with SIGKILL mid-shard (no chance to clean up), or stopped with SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import time

from tests.fixtures.s3server import REPO, load_manifest, run_s3sync, s3sync_argv, s3sync_env, tree

PART = 1024 * 1024
ARGS = ("--part-size", "1MiB", "--concurrency", "2")


def start_throttled(server, ws, dest):
    """A sync slowed to ~4 MiB/s, so that the 20 MB shard takes about 5 s."""
    return subprocess.Popen(s3sync_argv(server, ws.uri, dest, *ARGS, "--max-bandwidth", "4MiB", "--progress-json"),
                            cwd=REPO, env=s3sync_env(server), stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def recorded_parts(dest, shard: str) -> set[int]:
    """The shard's parts the manifest records as on disk ("0-3,5" -> {0, 1, 2, 3, 5})."""
    try:
        state = load_manifest(dest)["partial"].get(shard)
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return set()
    done: set[int] = set()
    for chunk in filter(None, (state or {}).get("done", "").split(",")):
        a, _, b = chunk.partition("-")
        done.update(range(int(a), int(b or a) + 1))
    return done


def wait_for_shard_parts(dest, shard: str, at_least: int, proc, timeout: float = 60) -> set[int]:
    """Poll the manifest until it records `at_least` parts of the shard on disk."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()
        done = recorded_parts(dest, shard)
        if len(done) >= at_least:
            return done
        time.sleep(0.05)
    raise AssertionError("the shard's parts never showed up in the manifest")


def shard_part_reads(server, ws, since) -> int:
    return sum(1 for r in server.requests(since=since, bucket=ws.bucket)
               if r.is_object_read and r.bucket_and_key[1] == ws.key(ws.shard))


def test_a_sync_killed_mid_shard_resumes_fetching_only_the_missing_parts_and_ends_identical(
        moto_server, weights_set, tmp_path):
    ws = weights_set()
    dest = tmp_path / "m"
    proc = start_throttled(moto_server, ws, dest)
    wait_for_shard_parts(dest, ws.shard, 4, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    proc.stdout.close()
    proc.stderr.close()

    assert not (dest / ws.shard).exists()                     # never a truncated shard under its real name
    assert (dest / (ws.shard + ".orch-partial")).exists()
    recorded = load_manifest(dest)
    small = {rel for rel in ws.files() if rel != ws.shard}
    assert small <= set(recorded["files"])                    # the small files finished before the kill
    parts_kept = recorded_parts(dest, ws.shard)

    mark = moto_server.mark()
    run = run_s3sync(moto_server, ws.uri, dest, *ARGS, "--json")
    assert run.code == 0, run.stderr
    summary = run.json()
    shard_size = len(ws.files()[ws.shard])
    nparts = -(-shard_size // PART)
    assert summary["resumed_files"] == 1
    kept_bytes = sum(min(PART, shard_size - i * PART) for i in parts_kept)
    assert summary["resumed_bytes"] == kept_bytes
    assert summary["downloaded_bytes"] == shard_size - kept_bytes
    reads = [r for r in moto_server.requests(since=mark, bucket=ws.bucket) if r.is_object_read]
    assert {r.bucket_and_key[1] for r in reads} == {ws.key(ws.shard)}   # nothing else fetched again
    assert len(reads) == nparts - len(parts_kept)                       # only the missing parts
    assert all(r.status == 206 for r in reads)
    assert tree(dest) == ws.files()
    assert not list(dest.rglob("*.orch-partial"))
    assert load_manifest(dest)["partial"] == {}


def test_a_sync_stopped_with_sigterm_exits_130_saying_so_and_the_next_run_completes(
        moto_server, weights_set, tmp_path):
    ws = weights_set()
    dest = tmp_path / "m"
    proc = start_throttled(moto_server, ws, dest)
    wait_for_shard_parts(dest, ws.shard, 2, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    last = json.loads(out.decode().splitlines()[-1])
    assert last["event"] == "error" and last["kind"] == "interrupted"
    assert "re-run to resume" in last["message"]
    assert not (dest / ws.shard).exists()
    kept = load_manifest(dest)["partial"][ws.shard]          # saved on the way out

    run = run_s3sync(moto_server, ws.uri, dest, *ARGS, "--json")
    assert run.code == 0, run.stderr
    assert run.json()["resumed_files"] == 1 and kept["etag"]
    assert tree(dest) == ws.files()


def test_partial_parts_are_not_trusted_when_the_object_changed_on_s3_in_between(moto_server, weights_set, tmp_path):
    ws = weights_set()
    dest = tmp_path / "m"
    proc = start_throttled(moto_server, ws, dest)
    wait_for_shard_parts(dest, ws.shard, 3, proc)
    proc.kill()
    proc.wait(10)
    proc.stdout.close()
    proc.stderr.close()
    new_shard = bytes(reversed(ws.files()[ws.shard]))
    moto_server.client().put_object(Bucket=ws.bucket, Key=ws.key(ws.shard), Body=new_shard)

    run = run_s3sync(moto_server, ws.uri, dest, *ARGS, "--json")
    assert run.code == 0, run.stderr
    assert run.json()["resumed_files"] == 0
    assert (dest / ws.shard).read_bytes() == new_shard


def test_a_shard_whose_parts_were_all_on_disk_before_the_kill_is_renamed_without_any_download(
        moto_server, weights_set, tmp_path):
    ws = weights_set()
    dest = tmp_path / "m"
    assert run_s3sync(moto_server, ws.uri, dest, *ARGS).code == 0
    # The state a kill leaves between the last part's write and the rename: every part recorded, no real name.
    manifest_path = dest / ".orch-weights.json"
    manifest = json.loads(manifest_path.read_text())
    entry = manifest["files"].pop(ws.shard)
    nparts = -(-entry["size"] // PART)
    manifest["partial"][ws.shard] = {"key": entry["key"], "size": entry["size"], "etag": entry["etag"],
                                     "part_size": PART, "done": f"0-{nparts - 1}", "boot": entry["boot"]}
    manifest_path.write_text(json.dumps(manifest))
    (dest / ws.shard).rename(dest / (ws.shard + ".orch-partial"))

    mark = moto_server.mark()
    run = run_s3sync(moto_server, ws.uri, dest, *ARGS, "--json")
    assert run.code == 0, run.stderr
    assert not any(r.is_object_read for r in moto_server.requests(since=mark, bucket=ws.bucket))
    assert run.json()["downloaded_bytes"] == 0 and run.json()["resumed_files"] == 1
    assert tree(dest) == ws.files()
