"""Deploys and trainings that race each other on one instance: they serialise on the instance's deploy lock,
a bundle is trusted only once it verifies against its own file list, and a second training is refused naming
the run that holds the GPU -- whatever the timing."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import threading
import time
from pathlib import Path

import pytest

from tests.fixtures.local_project import local_project, tiny_weights_uri  # noqa: F401  (fixtures)
from tests.fixtures.s3server import moto_server  # noqa: F401

pytestmark = pytest.mark.timeout(600)


def wait_until(predicate, timeout: float, what: str, poll: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def bundle_files(bundle_dir: Path) -> dict[str, str]:
    return {p.relative_to(bundle_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(bundle_dir.rglob("*")) if p.is_file() and not p.name.startswith(".")}


def local_payload_files() -> dict[str, str]:
    from orchestrator.bundle import PAYLOAD_DIR, payload_files

    return {f"remote_payload/{rel}": hashlib.sha256((PAYLOAD_DIR / rel).read_bytes()).hexdigest()
            for rel in payload_files()}


def test_a_deploy_waits_for_another_deploy_holding_the_instance_lock(local_project):  # noqa: F811
    lock_path = local_project.work / "locks" / "deploy.lock"
    lock_path.parent.mkdir(parents=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)          # another deploy is in progress
    err_lines: list[str] = []
    try:
        proc = local_project.popen("deploy", "demo", "--no-weights")
        reader = threading.Thread(target=lambda: err_lines.extend(iter(proc.stderr.readline, "")), daemon=True)
        reader.start()
        try:
            wait_until(lambda: "waiting for another deploy" in "".join(err_lines), 60,
                       "the deploy to say it waits for the lock")
        except AssertionError:
            proc.kill()
            raise AssertionError("".join(err_lines)) from None
        assert proc.poll() is None, "the deploy went on while another one held the instance lock"
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    assert proc.wait(120) == 0, "".join(err_lines)
    reader.join(10)
    assert any("deployed demo" in line for line in err_lines), "".join(err_lines)


def test_a_bundle_missing_files_despite_its_complete_marker_is_rebuilt_not_reused(local_project):  # noqa: F811
    first = local_project.orch("deploy", "demo", "--no-weights", "--json")
    assert first.code == 0, first.stderr
    bundle = Path(first.json()["bundle_dir"])
    victim = bundle / "remote_payload" / "train.py"
    victim.unlink()                                   # what a racing unpack used to leave behind
    second = local_project.orch("deploy", "demo", "--no-weights", "--json")
    assert second.code == 0, second.stderr
    assert second.json()["payload_bytes_sent"] > 0
    assert victim.is_file()
    assert any("did not verify" in step for step in second.json()["steps"]), second.json()["steps"]
    third = local_project.orch("deploy", "demo", "--no-weights", "--json")
    assert third.json()["payload_bytes_sent"] == 0


def test_five_deploys_started_at_once_leave_one_complete_verified_bundle(local_project):  # noqa: F811
    procs = [local_project.popen("deploy", "demo", "--no-weights", "--json") for _ in range(5)]
    results = [(p.wait(180), *p.communicate()) for p in procs]
    for code, out, err in results:
        assert code == 0, err[-2000:]
    dirs = {json.loads(out)["bundle_dir"] for _, out, _ in results}
    assert len(dirs) == 1
    bundle = Path(dirs.pop())
    have = {k: v for k, v in bundle_files(bundle).items() if k.startswith("remote_payload/")}
    assert have == local_payload_files()
    leftovers = [p.name for p in bundle.parent.iterdir() if p != bundle]
    assert leftovers == [], leftovers
    sent = sorted(json.loads(out)["payload_bytes_sent"] for _, out, _ in results)
    assert sent[0] == 0 and sent[-1] > 0 and sent.count(0) == 4   # shipped once, reused four times


@pytest.mark.parametrize("delay", [0.0, 0.1])
def test_a_second_training_started_within_100_ms_is_refused_naming_the_run_that_holds_the_gpu(
        local_project, delay):  # noqa: F811
    a = local_project.popen("train", "long", "--json")
    time.sleep(delay)               # the race under test: the second command starts this soon after
    b = local_project.popen("train", "long", "--json")
    outs = [(p.wait(300), *p.communicate()) for p in (a, b)]
    started = [json.loads(out) for code, out, _ in outs if code == 0]
    refused = [(code, out, err) for code, out, err in outs if code != 0]
    try:
        assert len(started) == 1 and len(refused) == 1, outs
        holder = started[0]
        code, out, err = refused[0]
        assert code == 1
        assert "s3sync" not in err and "another s3sync" not in out
        pid = (local_project.run_dir(holder["run_id"]) / "pid").read_text().strip()
        assert holder["run_id"] in err and "job long" in err and f"pid {pid}" in err, err[-2000:]
    finally:
        for doc in started:
            local_project.orch("stop", "--run", doc["run_id"], "--grace", "5")


def test_a_refused_deploy_names_a_flag_that_exists_and_force_deploys_anyway(local_project):  # noqa: F811
    local_project.write_inventory(
        json.loads(json.dumps(_jobs(local_project))),
        instance={"expect": {"gpu": "A10G", "min_free_disk_gb": 0.001, "min_free_tmp_gb": 0.001}})
    refused = local_project.orch("deploy", "demo", "--no-weights")
    assert refused.code == 1
    flags = re.findall(r"--[a-z][a-z-]+", refused.stderr.split("hint:", 1)[-1])
    assert flags, refused.stderr
    help_text = local_project.orch("deploy", "--help").stdout
    for flag in flags:
        assert flag in help_text, f"the hint suggests {flag}, which `orch deploy` does not accept"
    forced = local_project.orch("deploy", "demo", "--no-weights", "--force")
    assert forced.code == 0, forced.stderr


def _jobs(project) -> dict:
    import yaml

    return yaml.safe_load(project.inventory.read_text())["jobs"]
