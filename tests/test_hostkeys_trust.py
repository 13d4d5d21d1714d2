"""Host keys are checked, never accepted silently: unknown keys fail with their fingerprint and the
`orch trust` command; changed keys are refused with both fingerprints; `orch trust` records keys in a
known_hosts file that bare OpenSSH reads too."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, orch
from tests.fixtures.sshd import sshd, sshd_factory, write_inventory  # noqa: F401  (fixtures)


@pytest.fixture(autouse=True)
def idle_gpu(sshd):  # noqa: F811
    sshd.set_gpu_case("a10g-idle")


def inventory_with(server, tmp_path: Path, known_hosts: Path | None = None, **fields):
    known_hosts = known_hosts or tmp_path / "known_hosts"
    entry = server.instance("box", known_hosts=str(known_hosts), **fields)
    return write_inventory(tmp_path, {"box": entry}), known_hosts


def preflight(inventory: Path, *extra: str):
    run = orch("--inventory", str(inventory), "preflight", "--instance", "box", *extra, env={"COLUMNS": "250"})
    assert "Traceback" not in run.stderr
    return run


def test_first_contact_with_an_unknown_host_key_fails_with_its_fingerprint_and_the_trust_command(
        sshd, tmp_path):  # noqa: F811
    inventory, known_hosts = inventory_with(sshd, tmp_path)
    logins = sshd.logins()
    run = preflight(inventory, "--json")
    assert run.code == 1
    report = json.loads(run.stdout)["instances"][0]
    check = {c["name"]: c for c in report["checks"]}["host key"]
    assert not check["ok"]
    assert f"ssh-ed25519 {sshd.host_key_fingerprint()}" in check["detail"]
    assert "not known yet" in check["detail"]
    assert "orch trust --instance box" in check["fix"]
    assert sshd.logins() == logins          # no credentials were offered to an unknown server
    assert not known_hosts.exists()         # and nothing was recorded on the side
    human = preflight(inventory)
    assert human.code == 1 and "orch trust --instance box" in human.stderr


def test_orch_trust_records_the_key_so_preflight_passes_and_trusting_again_changes_nothing(
        sshd, tmp_path):  # noqa: F811
    inventory, known_hosts = inventory_with(sshd, tmp_path)
    run = orch("--inventory", str(inventory), "trust", "--instance", "box")
    assert run.code == 0, run.stderr
    assert sshd.host_key_fingerprint() in run.stderr and str(known_hosts) in run.stderr
    assert known_hosts.read_text() == f"[127.0.0.1]:{sshd.port} {sshd.host_key_line}\n"
    assert preflight(inventory).code == 0
    again = orch("--inventory", str(inventory), "trust", "--instance", "box", "--json")
    assert again.code == 0
    assert json.loads(again.stdout)["status"] == "already-known"
    assert known_hosts.read_text().count("\n") == 1


def test_bare_openssh_accepts_the_known_hosts_entry_orch_trust_wrote(sshd, tmp_path):  # noqa: F811
    inventory, known_hosts = inventory_with(sshd, tmp_path)
    assert orch("--inventory", str(inventory), "trust", "--instance", "box").code == 0
    argv = sshd.ssh_argv("true")
    argv[argv.index(f"UserKnownHostsFile={sshd.known_hosts}")] = f"UserKnownHostsFile={known_hosts}"
    assert subprocess.run(argv, capture_output=True, timeout=30).returncode == 0


def test_a_changed_host_key_is_refused_with_both_fingerprints(sshd_factory, tmp_path):  # noqa: F811
    server = sshd_factory()
    inventory, known_hosts = inventory_with(server, tmp_path, known_hosts=server.known_hosts)
    assert preflight(inventory).code == 0
    old = server.host_key_fingerprint()
    server.rotate_host_key()
    new = server.host_key_fingerprint()
    logins = server.logins()
    run = preflight(inventory, "--json")
    assert run.code == 1
    check = {c["name"]: c for c in json.loads(run.stdout)["instances"][0]["checks"]}["host key"]
    assert "HOST KEY CHANGED" in check["detail"]
    assert old in check["detail"] and new in check["detail"]
    assert "--replace" in check["fix"] and "is it the right instance?" in check["fix"]
    assert server.logins() == logins


def test_trust_refuses_to_overwrite_a_changed_key_unless_told_to_replace_it(sshd_factory, tmp_path):  # noqa: F811
    server = sshd_factory()
    known_hosts = tmp_path / "known_hosts"
    other = "203.0.113.7 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHgxP1tU4aFv0rtPVgN8SwZ7k9JvvGLqgZb9W8i5Wq2O"
    known_hosts.write_text(f"# kept\n{other}\n{server.known_hosts_line}\n")
    inventory, _ = inventory_with(server, tmp_path, known_hosts=known_hosts)
    server.rotate_host_key()
    refused = orch("--inventory", str(inventory), "trust", "--instance", "box")
    assert refused.code == 1
    assert "HOST KEY CHANGED" in refused.stderr and "Traceback" not in refused.stderr
    assert server.known_hosts_line not in known_hosts.read_text()
    replaced = orch("--inventory", str(inventory), "trust", "--instance", "box", "--replace")
    assert replaced.code == 0, replaced.stderr
    assert known_hosts.read_text() == f"# kept\n{other}\n{server.known_hosts_line}\n"
    assert preflight(inventory).code == 0


def test_trust_with_a_fingerprint_that_does_not_match_records_nothing(sshd, tmp_path):  # noqa: F811
    inventory, known_hosts = inventory_with(sshd, tmp_path)
    run = orch("--inventory", str(inventory), "trust", "--instance", "box",
               "--fingerprint", "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    assert run.code == 1 and sshd.host_key_fingerprint() in run.stderr
    assert not known_hosts.exists()
    ok = orch("--inventory", str(inventory), "trust", "--instance", "box",
              "--fingerprint", sshd.host_key_fingerprint())
    assert ok.code == 0 and known_hosts.exists()


def test_a_pinned_host_key_from_env_is_enough_and_a_wrong_one_is_refused_naming_its_variable(
        sshd, sshd_factory, tmp_path):  # noqa: F811
    entry = sshd.instance("box", known_hosts=str(tmp_path / "empty_known_hosts"), host_key="${BOX_HOST_KEY}")
    inventory = write_inventory(tmp_path, {"box": entry}, env={"BOX_HOST_KEY": sshd.host_key_line})
    assert preflight(inventory).code == 0
    stranger = sshd_factory()
    write_inventory(tmp_path, {"box": entry}, env={"BOX_HOST_KEY": stranger.host_key_line})
    run = preflight(inventory, "--json")
    assert run.code == 1
    check = {c["name"]: c for c in json.loads(run.stdout)["instances"][0]["checks"]}["host key"]
    assert stranger.host_key_fingerprint() in check["detail"] and sshd.host_key_fingerprint() in check["detail"]
    assert "BOX_HOST_KEY in " in check["detail"] + check["fix"]


def test_hashed_known_hosts_entries_are_recognised(sshd, tmp_path):  # noqa: F811
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(sshd.known_hosts_line + "\n")
    subprocess.run(["ssh-keygen", "-H", "-f", str(known_hosts)], check=True, capture_output=True)
    assert known_hosts.read_text().startswith("|1|")
    inventory, _ = inventory_with(sshd, tmp_path, known_hosts=known_hosts)
    assert preflight(inventory).code == 0


def test_a_key_recorded_for_port_22_does_not_vouch_for_another_port(sshd, tmp_path):  # noqa: F811
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"127.0.0.1 {sshd.host_key_line}\n")   # the same host, but port 22
    inventory, _ = inventory_with(sshd, tmp_path, known_hosts=known_hosts)
    run = preflight(inventory)
    assert run.code == 1 and "not known yet" in run.stderr


def test_no_code_accepts_unknown_host_keys_automatically():
    forbidden = re.compile(r"AutoAddPolicy|WarningPolicy|StrictHostKeyChecking=no|UserKnownHostsFile=/dev/null")
    offenders = [str(p.relative_to(ROOT)) for folder in ("orchestrator", "remote_payload", "bench")
                 for p in (ROOT / folder).rglob("*.py") if forbidden.search(p.read_text())]
    assert offenders == []
